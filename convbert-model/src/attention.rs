//! Mixed attention: `ConvBertSelfAttention` (H = num_attention_heads / head_ratio self-attention
//! heads plus span-based dynamic-convolution heads), `ConvBertSelfOutput` and `ConvBertAttention`.
//! Reference: transformers v4.57.6 `modeling_convbert.py`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L287>).

use tch::nn::Path;
use tch::Tensor;

use crate::config::ConvBertConfig;
use crate::error::Result;
use crate::primitives::{
    add_owned, dropout, linear, LayerNorm, Linear, LinearKernel, LinearKernelFactory,
};
use crate::separable_conv::SeparableConv1d;

/// Per-call context shared by all layers.
pub(crate) struct AttentionContext<'a> {
    /// Additive bias (B, 1, 1|Lq, Lk) in the model kind, or None (no padding).
    pub mask_bias: Option<&'a Tensor>,
    /// Padding-invariant mode: (B, L, 1) with 1 at real tokens; zeroes the conv-branch inputs.
    pub keep: Option<&'a Tensor>,
    pub output_attentions: bool,
    pub train: bool,
}

#[derive(Debug)]
pub(crate) struct ConvBertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    key_conv_attn_layer: SeparableConv1d,
    conv_kernel_layer: Linear,
    conv_out_layer: Linear,
    /// query, key, value and conv_out_layer as one replacement kernel over their concatenated
    /// weights (one GEMM, as `projections` runs them), when replaced.
    projections_kernel: Option<Box<dyn LinearKernel>>,
    heads: i64,
    head_size: i64,
    kernel: i64,
    dropout: f64,
}

impl ConvBertSelfAttention {
    pub(crate) fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        let (d_model, std) = (cfg.hidden_size, cfg.initializer_range);
        let heads = cfg.attention_heads();
        let head_size = cfg.attention_head_size();
        let all = heads * head_size;
        let k = cfg.conv_kernel_size;
        Ok(ConvBertSelfAttention {
            query: Linear::new(&(p / "query"), d_model, all, std)?,
            key: Linear::new(&(p / "key"), d_model, all, std)?,
            value: Linear::new(&(p / "value"), d_model, all, std)?,
            key_conv_attn_layer: SeparableConv1d::new(
                &(p / "key_conv_attn_layer"),
                d_model,
                all,
                k,
                std,
            )?,
            conv_kernel_layer: Linear::new(&(p / "conv_kernel_layer"), all, heads * k, std)?,
            conv_out_layer: Linear::new(&(p / "conv_out_layer"), d_model, all, std)?,
            projections_kernel: None,
            heads,
            head_size,
            kernel: k,
            dropout: cfg.attention_probs_dropout_prob,
        })
    }

    /// x (B, L, D) -> context (B, L, 2A = D) and, if asked, the probabilities (B, H, L, L).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        head_mask: Option<&Tensor>,
        ctx: &AttentionContext,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, l) = (x.size()[0], x.size()[1]);
        let (h, d) = (self.heads, self.head_size);
        let [q, k, v, u] = self.projections(x)?;
        let conv = self.dynamic_conv(x, &q, u, ctx.keep)?; // (B, L, H, d)

        let split =
            |t: Tensor| -> Result<Tensor> { Ok(t.f_view([b, l, h, d])?.f_transpose(1, 2)?) };
        let (qh, kh, vh) = (split(q)?, split(k)?, split(v)?);
        // The fused kernel pays off on GPUs; on CPUs libtorch's flash attention runs at half the
        // speed of the explicit GEMMs for these short rows (bf16 and fp32 alike).
        let explicit = ctx.output_attentions
            || head_mask.is_some()
            || ctx.train
            || x.device() == tch::Device::Cpu;
        let (context, probs) = if explicit {
            let scores = qh
                .f_matmul(&kh.f_transpose(-1, -2)?)?
                .f_div_scalar((d as f64).sqrt())?;
            let scores = match ctx.mask_bias {
                Some(m) => scores.f_add(m)?,
                None => scores,
            };
            let mut probs = dropout(
                // No dtype, as HF: under autocast softmax then runs in fp32.
                scores.f_softmax(-1, None)?,
                self.dropout,
                ctx.train,
            )?;
            if let Some(hm) = head_mask {
                probs = probs.f_mul(hm)?;
            }
            let context = probs.f_matmul(&vh)?;
            (context, ctx.output_attentions.then_some(probs))
        } else {
            // Fused kernel: same maths as above (softmax(QKᵀ/√d + bias) V), not the same op order,
            // which stays within 1e-6 of HF in fp32 (checked by the golden tests on CUDA).
            let context = Tensor::f_scaled_dot_product_attention(
                &qh,
                &kh,
                &vh,
                ctx.mask_bias,
                0.0,
                false,
                None,
                false,
            )?;
            (context, None)
        };
        // Attention heads first, conv heads second, each head-major: (B, L, 2H, d) -> (B, L, 2A).
        let context =
            Tensor::f_cat(&[context.f_transpose(1, 2)?, conv], 2)?.f_view([b, l, 2 * h * d])?;
        Ok((context, probs))
    }

    /// query, key, value and conv_out_layer of x, each (B, L, A). Without grads (inference) the
    /// four share one GEMM on the concatenated weights (a concatenation costs little next to the
    /// GEMM, and nothing is cached that could go stale when weights change), split by views.
    fn projections(&self, x: &Tensor) -> Result<[Tensor; 4]> {
        let a = self.heads * self.head_size;
        if let Some(k) = &self.projections_kernel {
            let y = k.forward(x)?;
            return Ok([
                y.f_narrow(-1, 0, a)?,
                y.f_narrow(-1, a, a)?,
                y.f_narrow(-1, 2 * a, a)?,
                y.f_narrow(-1, 3 * a, a)?,
            ]);
        }
        let parts = [&self.query, &self.key, &self.value, &self.conv_out_layer];
        let needs_grad = x.requires_grad()
            || parts
                .iter()
                .any(|p| p.weight.requires_grad() || p.bias.requires_grad());
        if needs_grad {
            return Ok([
                parts[0].forward(x)?,
                parts[1].forward(x)?,
                parts[2].forward(x)?,
                parts[3].forward(x)?,
            ]);
        }
        let w = Tensor::f_cat(&parts.map(|p| &p.weight), 0)?;
        let bias = Tensor::f_cat(&parts.map(|p| &p.bias), 0)?;
        let y = linear(x, &w, &bias)?;
        Ok([
            y.f_narrow(-1, 0, a)?,
            y.f_narrow(-1, a, a)?,
            y.f_narrow(-1, 2 * a, a)?,
            y.f_narrow(-1, 3 * a, a)?,
        ])
    }

    /// Every GEMM through `make`'s kernels: the four projections fused as `projections` runs
    /// them (per-output-channel kernels see the same rows either way), the pointwise conv and
    /// conv_kernel_layer. Returns how many kernels were made.
    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        let parts = [&self.query, &self.key, &self.value, &self.conv_out_layer];
        let w = Tensor::f_cat(&parts.map(|p| &p.weight), 0)?;
        let bias = Tensor::f_cat(&parts.map(|p| &p.bias), 0)?;
        self.projections_kernel = Some(make(&w, &bias)?);
        self.key_conv_attn_layer.replace_pointwise(make)?;
        self.conv_kernel_layer.replace_kernel(make)?;
        Ok(3)
    }

    /// Span-based dynamic convolution: kernels softmax(conv_kernel_layer(Ks ⊙ Q)) over K taps,
    /// applied to windows of u = conv_out_layer(x). q, u (B, L, A) -> (B, L, H, d).
    fn dynamic_conv(
        &self,
        x: &Tensor,
        q: &Tensor,
        mut u: Tensor,
        keep: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, l) = (x.size()[0], x.size()[1]);
        let (h, d, k) = (self.heads, self.head_size, self.kernel);
        let pad = (k - 1) / 2;
        // HF's conv branch ignores the attention mask; the padding-invariant mode zeroes the
        // padded inputs instead, as an unpadded run sees zeros there.
        let x_conv = match keep {
            Some(m) => x.f_mul(m)?,
            None => x.shallow_clone(),
        };
        let key_conv = self.key_conv_attn_layer.forward(&x_conv)?; // (B, L, A)
        let logits = self.conv_kernel_layer.forward(&key_conv.f_mul(q)?)?; // (B, L, H*K)
        let pi = logits.f_view([b, l, h, k])?;
        let pi = pi.f_softmax(-1, None)?;
        if let Some(m) = keep {
            u = u.f_mul(m)?;
        }
        // conv[l, h, j] = sum_t pi[l, h, t] * u[l + t - pad, h*d + j], zero outside the sequence.
        let up = u
            .f_constant_pad_nd([0, 0, pad, pad])?
            .f_view([b, l + 2 * pad, h, d])?;
        let mut acc = up.f_narrow(1, 0, l)?.f_mul(&pi.f_narrow(3, 0, 1)?)?;
        for t in 1..k {
            acc = acc.f_addcmul_(&up.f_narrow(1, t, l)?, &pi.f_narrow(3, t, 1)?)?;
        }
        Ok(acc)
    }
}

/// `ConvBertSelfOutput`: LayerNorm(dropout(dense(r)) + x).
#[derive(Debug)]
pub(crate) struct ConvBertSelfOutput {
    dense: Linear,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl ConvBertSelfOutput {
    pub(crate) fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        Ok(ConvBertSelfOutput {
            dense: Linear::new(
                &(p / "dense"),
                cfg.hidden_size,
                cfg.hidden_size,
                cfg.initializer_range,
            )?,
            layer_norm: LayerNorm::new(&(p / "LayerNorm"), cfg.hidden_size, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    pub(crate) fn forward(&self, r: &Tensor, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = dropout(self.dense.forward(r)?, self.dropout, train)?;
        self.layer_norm.forward(&add_owned(y, x)?)
    }

    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        self.dense.replace_kernel(make)?;
        Ok(1)
    }
}

/// `ConvBertAttention` = self (mixed attention) then output (residual + LayerNorm).
#[derive(Debug)]
pub(crate) struct ConvBertAttention {
    self_attention: ConvBertSelfAttention,
    output: ConvBertSelfOutput,
}

impl ConvBertAttention {
    pub(crate) fn new(p: &Path, cfg: &ConvBertConfig) -> Result<Self> {
        Ok(ConvBertAttention {
            self_attention: ConvBertSelfAttention::new(&(p / "self"), cfg)?,
            output: ConvBertSelfOutput::new(&(p / "output"), cfg)?,
        })
    }

    /// x (B, L, D) -> (B, L, D) and optional probabilities (B, H, L, L).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        head_mask: Option<&Tensor>,
        ctx: &AttentionContext,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (r, probs) = self.self_attention.forward(x, head_mask, ctx)?;
        Ok((self.output.forward(&r, x, ctx.train)?, probs))
    }

    /// See [`ConvBertModel::replace_linears`](crate::ConvBertModel::replace_linears).
    pub(crate) fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize> {
        Ok(self.self_attention.replace_linears(make)? + self.output.replace_linears(make)?)
    }
}
