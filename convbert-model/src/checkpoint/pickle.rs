//! A minimal pickle interpreter for the `data.pkl` of a `torch.save` zip archive holding a state
//! dict of plain tensors (what `save_pretrained(safe_serialization=False)` writes). It understands
//! the opcodes of protocols 2-5 that such files use, `torch._utils._rebuild_tensor_v2` /
//! `_rebuild_parameter`, `collections.OrderedDict` and persistent storage ids; anything else is
//! a typed error, never executed. Format: <https://github.com/python/cpython/blob/3.11/Lib/pickle.py>,
//! <https://github.com/pytorch/pytorch/blob/v2.11.0/torch/serialization.py>.
//!
//! Hostile input is bounded: values are shared (`Rc`), never deep-copied, so `DUP` / memo fetches
//! cost O(1) as in CPython (a "billion laughs" pickle stays a small DAG); containers are
//! copy-on-write, and every opcode and every copied item is charged to a work budget linear in
//! the pickle's size; nesting is capped at [`MAX_DEPTH`]; errors quote at most
//! [`QUOTE_CHARS`] characters of a value.

use std::collections::HashMap;
use std::rc::Rc;

use super::clip;

/// Deepest container nesting accepted (a state dict needs 3; CPython's recursion limit is 1000).
pub(crate) const MAX_DEPTH: usize = 100;
/// Longest quote of a value inside an error message.
pub(crate) const QUOTE_CHARS: usize = 200;
/// Work allowed for any pickle: opcodes plus items copied; a real state dict uses about one
/// unit per byte.
const BASE_WORK: usize = 1 << 20;
const WORK_PER_BYTE: usize = 4;

/// A storage reference: zip entry key, element kind name (e.g. "FloatStorage").
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    pub key: String,
    pub storage_type: String,
}

/// A tensor as the pickle describes it (a strided view into a storage).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// Items of a container with their nesting depth (1 + the deepest item), known at construction.
#[derive(Debug, Clone)]
struct Seq<T> {
    depth: usize,
    items: Vec<T>,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq<Value>>),
    List(Rc<Seq<Value>>),
    Dict(Rc<Seq<(Value, Value)>>),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Result of calling a global we do not model (e.g. metadata objects); kept inert.
    Opaque,
    Mark,
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(s) => s.depth,
            _ => 0,
        }
    }

    fn checked_depth(&self) -> Result<usize, String> {
        let d = self.depth() + 1;
        if d > MAX_DEPTH {
            return Err(format!("containers nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(d)
    }

    fn seq(items: Vec<Value>) -> Result<Rc<Seq<Value>>, String> {
        let mut depth = 1;
        for v in &items {
            depth = depth.max(v.checked_depth()?);
        }
        Ok(Rc::new(Seq { depth, items }))
    }

    fn tuple(items: Vec<Value>) -> Result<Value, String> {
        Ok(Value::Tuple(Value::seq(items)?))
    }

    fn dict(pairs: Vec<(Value, Value)>) -> Result<Value, String> {
        let mut depth = 1;
        for (k, v) in &pairs {
            depth = depth.max(k.checked_depth()?).max(v.checked_depth()?);
        }
        Ok(Value::Dict(Rc::new(Seq {
            depth,
            items: pairs,
        })))
    }

    fn empty_dict() -> Value {
        Value::Dict(Rc::new(Seq {
            depth: 1,
            items: Vec::new(),
        }))
    }
}

/// A short, bounded rendering of a value for error messages: at most [`QUOTE_CHARS`] characters,
/// "…" when cut. Every visited node writes at least one character, so the walk is bounded too
/// (a shared DAG of 2^40 nodes costs no more than a leaf).
fn quote(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        if out.len() > QUOTE_CHARS * 4 {
            return;
        }
        let seq = |items: &[Value], open: &str, close: &str, out: &mut String| {
            out.push_str(open);
            for (i, item) in items.iter().enumerate() {
                if out.len() > QUOTE_CHARS * 4 {
                    return;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                walk(item, out);
            }
            out.push_str(close);
        };
        match v {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&f.to_string()),
            Value::Str(s) => out.push_str(&format!("{:?}", clip(s, QUOTE_CHARS))),
            Value::Bytes(b) => out.push_str(&format!("<{} bytes>", b.len())),
            Value::Tuple(s) => seq(&s.items, "(", ")", out),
            Value::List(s) => seq(&s.items, "[", "]", out),
            Value::Dict(s) => {
                out.push('{');
                for (i, (k, v)) in s.items.iter().enumerate() {
                    if out.len() > QUOTE_CHARS * 4 {
                        return;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    walk(k, out);
                    out.push_str(": ");
                    walk(v, out);
                }
                out.push('}');
            }
            Value::Global(g) => {
                out.push_str(&clip(&format!("{}.{}", g.0, g.1), QUOTE_CHARS));
            }
            Value::Storage(s) => {
                out.push_str(&format!("<storage {}>", clip(&s.storage_type, QUOTE_CHARS)))
            }
            Value::Tensor(t) => out.push_str(&format!("<tensor of rank {}>", t.size.len())),
            Value::Opaque => out.push_str("<object>"),
            Value::Mark => out.push_str("<mark>"),
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    clip(&out, QUOTE_CHARS)
}

/// Work left before the pickle is refused as too costly.
struct Budget(usize);

impl Budget {
    fn charge(&mut self, units: usize) -> Result<(), String> {
        self.0 = self.0.checked_sub(units).ok_or_else(|| {
            "the pickle does more work than a state dict of its size can need \
             (shared values expanded or copied too often)"
                .to_string()
        })?;
        Ok(())
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated pickle")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len64(&mut self) -> Result<usize, String> {
        usize::try_from(self.u64()?).map_err(|_| "truncated pickle".to_string())
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("truncated pickle line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<Value, String> {
        let s = std::str::from_utf8(self.take(n)?)
            .map_err(|_| "invalid utf-8 in pickle string".to_string())?;
        Ok(Value::Str(s.into()))
    }
    fn bytes(&mut self, n: usize) -> Result<Value, String> {
        Ok(Value::Bytes(self.take(n)?.into()))
    }
}

fn as_i64(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(*b as i64),
        other => Err(format!("expected an integer, got {}", quote(other))),
    }
}

fn as_ints(v: &Value, budget: &mut Budget) -> Result<Vec<i64>, String> {
    match v {
        Value::Tuple(s) | Value::List(s) => {
            budget.charge(s.items.len())?;
            s.items.iter().map(as_i64).collect()
        }
        other => Err(format!(
            "expected a tuple of integers, got {}",
            quote(other)
        )),
    }
}

/// `persistent_load` of torch: ('storage', StorageType, key, location, numel).
fn persistent(pid: Value) -> Result<Value, String> {
    if let Value::Tuple(s) = &pid {
        if let [Value::Str(tag), Value::Global(g), Value::Str(key), ..] = s.items.as_slice() {
            if &**tag == "storage" {
                return Ok(Value::Storage(Rc::new(StorageRef {
                    key: key.to_string(),
                    storage_type: g.1.clone(),
                })));
            }
        }
    }
    Err(format!("unsupported persistent id {}", quote(&pid)))
}

fn call(func: Value, args: Value, budget: &mut Budget) -> Result<Value, String> {
    let Value::Global(g) = &func else {
        return Err(format!("cannot call {}", quote(&func)));
    };
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match (g.0.as_str(), g.1.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [Value::Storage(storage), offset, size, stride, ..] = args.items.as_slice() else {
                return Err(format!(
                    "unexpected _rebuild_tensor arguments {}",
                    quote(&Value::Tuple(args))
                ));
            };
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: (**storage).clone(),
                offset: as_i64(offset)?,
                size: as_ints(size, budget)?,
                stride: as_ints(stride, budget)?,
            })))
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => args
            .items
            .first()
            .cloned()
            .ok_or_else(|| "empty _rebuild_parameter".to_string()),
        ("collections", "OrderedDict") => Ok(Value::empty_dict()),
        ("torch", "device") | ("builtins", "set") | ("builtins", "frozenset") => Ok(Value::Opaque),
        (module, name) => Err(format!(
            "unsupported global {} (only plain tensor state dicts are read)",
            clip(&format!("{module}.{name}"), QUOTE_CHARS)
        )),
    }
}

/// The container on top of the stack, made unique (copied if shared, the copy charged).
fn top_list<'s>(
    stack: &'s mut [Value],
    budget: &mut Budget,
    op: &str,
) -> Result<&'s mut Seq<Value>, String> {
    match stack.last_mut() {
        Some(Value::List(l)) => {
            if Rc::strong_count(l) > 1 {
                budget.charge(l.items.len())?;
            }
            Ok(Rc::make_mut(l))
        }
        _ => Err(format!("{op} to a non-list")),
    }
}

fn top_dict<'s>(
    stack: &'s mut [Value],
    budget: &mut Budget,
    op: &str,
) -> Result<&'s mut Seq<(Value, Value)>, String> {
    match stack.last_mut() {
        Some(Value::Dict(d)) => {
            if Rc::strong_count(d) > 1 {
                budget.charge(d.items.len())?;
            }
            Ok(Rc::make_mut(d))
        }
        _ => Err(format!("{op} on a non-dict")),
    }
}

fn pairs(items: Vec<Value>) -> Vec<(Value, Value)> {
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// Interprets `data` and returns the state dict: name -> tensor description, in file order.
pub(crate) fn read_state_dict(data: &[u8]) -> Result<Vec<(String, TensorRef)>, String> {
    let mut r = Reader { data, pos: 0 };
    let mut budget = Budget(BASE_WORK.saturating_add(data.len().saturating_mul(WORK_PER_BYTE)));
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    let pop = |stack: &mut Vec<Value>| {
        stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    };
    let pop_mark = |stack: &mut Vec<Value>| -> Result<Vec<Value>, String> {
        let m = stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle MARK not found")?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    let top = |stack: &Vec<Value>, op: &str| {
        stack
            .last()
            .cloned()
            .ok_or_else(|| format!("{op} on empty stack"))
    };
    loop {
        budget.charge(1)?;
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO
            }
            0x95 => {
                r.u64()?; // FRAME
            }
            b'.' => break, // STOP
            b'(' => stack.push(Value::Mark),
            b'}' => stack.push(Value::empty_dict()),
            b']' => stack.push(Value::List(Value::seq(Vec::new())?)),
            b')' => stack.push(Value::tuple(Vec::new())?),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(r.u16()? as i64)),
            b'J' => stack.push(Value::Int(r.u32()? as i32 as i64)),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    return Err("integer too large".into());
                }
                let mut v: i64 = 0;
                for (i, byte) in b.iter().enumerate() {
                    v |= (*byte as i64) << (8 * i);
                }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(r.string(n)?);
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(r.string(n)?);
            }
            0x8d => {
                let n = r.len64()?;
                stack.push(r.string(n)?);
            }
            b'U' | b'C' => {
                let n = r.u8()? as usize;
                stack.push(r.bytes(n)?);
            }
            b'T' | b'B' => {
                let n = r.u32()? as usize;
                stack.push(r.bytes(n)?);
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => {
                        stack.push(Value::Global(Rc::new((m.to_string(), n.to_string()))))
                    }
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'q' => {
                let i = r.u8()? as u32;
                memo.insert(i, top(&stack, "BINPUT")?);
            }
            b'r' => {
                let i = r.u32()?;
                memo.insert(i, top(&stack, "LONG_BINPUT")?);
            }
            0x94 => {
                let i = memo.len() as u32;
                memo.insert(i, top(&stack, "MEMOIZE")?);
            }
            b'h' => {
                let i = r.u8()? as u32;
                stack.push(memo.get(&i).cloned().ok_or("BINGET of unknown memo")?);
            }
            b'j' => {
                let i = r.u32()?;
                stack.push(memo.get(&i).cloned().ok_or("LONG_BINGET of unknown memo")?);
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::tuple(items)?);
            }
            0x85 => {
                let a = pop(&mut stack)?;
                stack.push(Value::tuple(vec![a])?);
            }
            0x86 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::tuple(vec![a, b])?);
            }
            0x87 => {
                let c = pop(&mut stack)?;
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                stack.push(Value::tuple(vec![a, b, c])?);
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(Value::seq(items)?));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                let depth = v.checked_depth()?;
                let list = top_list(&mut stack, &mut budget, "APPEND")?;
                list.depth = list.depth.max(depth);
                list.items.push(v);
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                let mut depth = 1;
                for v in &items {
                    depth = depth.max(v.checked_depth()?);
                }
                let list = top_list(&mut stack, &mut budget, "APPENDS")?;
                list.depth = list.depth.max(depth);
                list.items.extend(items);
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::dict(pairs(items))?);
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                let depth = k.checked_depth()?.max(v.checked_depth()?);
                let dict = top_dict(&mut stack, &mut budget, "SETITEM")?;
                dict.depth = dict.depth.max(depth);
                dict.items.push((k, v));
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                let mut depth = 1;
                for v in &items {
                    depth = depth.max(v.checked_depth()?);
                }
                let dict = top_dict(&mut stack, &mut budget, "SETITEMS")?;
                dict.depth = dict.depth.max(depth);
                dict.items.extend(pairs(items));
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'R' | 0x81 => {
                // REDUCE (callable, args) / NEWOBJ (cls, args).
                let args = pop(&mut stack)?;
                let func = pop(&mut stack)?;
                stack.push(call(func, args, &mut budget)?);
            }
            b'b' => {
                // BUILD: state of an object (e.g. OrderedDict._metadata); not needed for tensors.
                pop(&mut stack)?;
            }
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => {
                let v = top(&stack, "DUP")?;
                stack.push(v);
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {}",
                    r.pos - 1
                ))
            }
        }
    }
    let root = stack.pop().ok_or("empty pickle")?;
    let Value::Dict(items) = root else {
        return Err(format!(
            "the pickle does not hold a dict but {}",
            quote(&root)
        ));
    };
    let mut out = Vec::with_capacity(items.items.len());
    for (k, v) in &items.items {
        let Value::Str(name) = k else {
            return Err(format!("non-string state-dict key {}", quote(k)));
        };
        match v {
            Value::Tensor(t) => out.push((name.to_string(), (**t).clone())),
            other => {
                return Err(format!(
                    "state-dict entry {} is not a tensor: {}",
                    clip(name, QUOTE_CHARS),
                    quote(other)
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_is_bounded_on_a_shared_dag_and_long_strings() {
        let mut v = Value::List(Value::seq(Vec::new()).unwrap());
        for _ in 0..40 {
            v = Value::tuple(vec![v.clone(), v]).unwrap();
        }
        let q = quote(&v);
        assert!(
            q.chars().count() <= QUOTE_CHARS + 1 && q.ends_with('…'),
            "{q}"
        );
        let long = Value::Str("x".repeat(1 << 20).into());
        assert!(quote(&long).chars().count() <= QUOTE_CHARS + 1);
    }
}
