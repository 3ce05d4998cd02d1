//! The GPU backends' [`BrnBackend`]: burn's operations, with the weight gradient split into
//! bands ([`banded`]), which a GPU runs on many blocks at once instead of a handful.

use burn::tensor::ops::{ConvOptions, FloatTensor};

use super::banded;
use crate::backend::BrnBackend;

/// [`BrnBackend`] for a GPU backend `$backend`.
macro_rules! banded_weight_gradient {
    ($backend:ty) => {
        impl BrnBackend for $backend {
            fn conv2d_weight_gradient(
                x: FloatTensor<Self>,
                weight: FloatTensor<Self>,
                output_grad: FloatTensor<Self>,
                options: ConvOptions<2>,
            ) -> FloatTensor<Self> {
                banded::split_or_burn::<Self>(x, weight, output_grad, options)
            }
        }
    };
}

#[cfg(feature = "wgpu")]
banded_weight_gradient!(burn_wgpu::Wgpu);

#[cfg(feature = "cuda")]
banded_weight_gradient!(burn_cuda::Cuda);
