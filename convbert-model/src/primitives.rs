//! Building blocks shared by every module: `Linear`, `LayerNorm` and dropout, created with
//! `Result`-returning var constructors and HF's initialisation (`ConvBertPreTrainedModel._init_weights`,
//! <https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/convbert/modeling_convbert.py#L238>).

use tch::nn::{Init, Path};
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// A replacement for the y = x Wᵀ + b of a [`Linear`] (or of the pointwise convolution), such as
/// an int8 dynamically quantized GEMM. Installed only by an explicit call
/// ([`ConvBertModel::replace_linears`](crate::ConvBertModel::replace_linears)); without one
/// every path runs as before. Inference only: a kernel need not carry gradients.
/// `Send + Sync` like the tensors it replaces, so a model stays shareable across threads.
pub trait LinearKernel: std::fmt::Debug + Send + Sync {
    /// (..., in) -> (..., out).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// Builds a kernel from a weight (out, in) and a bias (out,).
pub type LinearKernelFactory<'a> =
    dyn FnMut(&Tensor, &Tensor) -> Result<Box<dyn LinearKernel>> + 'a;

/// A model whose GEMMs can all run through [`LinearKernel`]s: the encoder
/// ([`ConvBertModel`](crate::ConvBertModel)) and every task head, theirs included.
pub trait ReplaceLinears {
    /// Kind and device of the weights.
    fn kind_and_device(&self) -> (Kind, Device);
    /// Runs every Linear and pointwise convolution through `make(weight (out, in), bias (out,))`'s
    /// kernel from now on; returns how many kernels were made.
    fn replace_linears(&mut self, make: &mut LinearKernelFactory) -> Result<usize>;
}

/// `nn.Linear(in, out)`: vars `weight` (out, in) and `bias` (out,); y = x Wᵀ + b.
#[derive(Debug)]
pub struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    /// When set, runs instead of the fp32/bf16 GEMM (see [`LinearKernel`]).
    pub(crate) kernel: Option<Box<dyn LinearKernel>>,
}

impl Linear {
    /// Creates `p/weight` ~ N(0, init_std) and `p/bias` = 0.
    pub fn new(p: &Path, in_dim: i64, out_dim: i64, init_std: f64) -> Result<Self> {
        Ok(Linear {
            weight: p.f_var(
                "weight",
                &[out_dim, in_dim],
                Init::Randn {
                    mean: 0.0,
                    stdev: init_std,
                },
            )?,
            bias: p.f_var("bias", &[out_dim], Init::Const(0.0))?,
            kernel: None,
        })
    }

    /// (..., in) -> (..., out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.kernel {
            Some(k) => k.forward(x),
            None => linear(x, &self.weight, &self.bias),
        }
    }

    /// Runs `make(weight, bias)`'s kernel instead of the GEMM from now on (the vars stay, so
    /// checkpoints still save them).
    pub fn replace_kernel(&mut self, make: &mut LinearKernelFactory) -> Result<()> {
        self.kernel = Some(make(&self.weight, &self.bias)?);
        Ok(())
    }

    /// Output width (rows of `weight`).
    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}

/// In training, GEMMs of fewer multiply-adds stay on `linear`: there oneDNN's per-call overhead,
/// forward and backward, outweighs its faster kernel (crossover at 4–8 M on an AMD EPYC; in
/// inference the convolution was as fast or faster at every size measured).
const ONEDNN_MIN_TRAINING_MACS: i64 = 1 << 23;

/// y = x Wᵀ + b for x (..., in), w (out, in), b (out,).
///
/// On the CPU in fp32 the GEMM runs as a 1x1 convolution over a channels-last view of the rows:
/// libtorch sends fp32 `addmm` to MKL, whose sgemm runs about half as fast as oneDNN's on AMD
/// AVX-512 CPUs, while fp32 convolutions go to oneDNN, and so do their gradients (the
/// convolution's backward; in training only from [`ONEDNN_MIN_TRAINING_MACS`] up). The view
/// needs no copy in and the channels-last result none out; only the summation order changes
/// (within 1e-6 of `linear`). Other devices and kinds keep `linear` as is.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let size = x.size();
    let (inp, out) = (size[size.len() - 1], w.size()[0]);
    let rows = size[..size.len() - 1].iter().product::<i64>();
    let training = x.requires_grad() || w.requires_grad() || b.requires_grad();
    if !(rows > 0
        && (!training || rows * inp * out >= ONEDNN_MIN_TRAINING_MACS)
        && x.device() == Device::Cpu
        && x.kind() == Kind::Float
        && w.kind() == Kind::Float)
    {
        return Ok(x.f_linear(w, Some(b))?);
    }
    let x4 = x.f_reshape([1, rows, 1, inp])?.f_permute([0, 3, 1, 2])?; // (1, in, rows, 1)
    let y = x4.f_conv2d(
        &w.f_view([out, inp, 1, 1])?,
        Some(b),
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    )?;
    let mut shape = size[..size.len() - 1].to_vec();
    shape.push(out);
    Ok(y.f_permute([0, 2, 3, 1])?.f_reshape(shape)?)
}

/// `nn.LayerNorm(dim, eps)` over the last axis: vars `weight`, `bias` (dim,).
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    /// Creates `p/weight` = 1 and `p/bias` = 0 of shape (dim,).
    pub fn new(p: &Path, dim: i64, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: p.f_var("weight", &[dim], Init::Const(1.0))?,
            bias: p.f_var("bias", &[dim], Init::Const(0.0))?,
            dim,
            eps,
        })
    }

    /// (..., dim) -> (..., dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )?)
    }
}

/// x + y, in place in x's buffer when nothing needs x for a gradient (x is then consumed).
pub(crate) fn add_owned(x: Tensor, y: &Tensor) -> Result<Tensor> {
    if x.requires_grad() || y.requires_grad() {
        Ok(x.f_add(y)?)
    } else {
        let mut x = x;
        Ok(x.f_add_(y)?)
    }
}

/// Dropout active only in training (`train == true`), like `nn.Dropout` in train/eval mode.
pub fn dropout(x: Tensor, p: f64, train: bool) -> Result<Tensor> {
    if train && p > 0.0 {
        Ok(x.f_dropout(p, true)?)
    } else {
        Ok(x)
    }
}
