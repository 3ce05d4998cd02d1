//! The convolution's products by the `gemm` crate: the portable path of [`super::conv`] and
//! [`super::conv_gradient`] (no instruction set assumed), one matrix product per kernel tap.

use super::layout::Shape;

/// A band's products by gemm: `wide = bias + Σ_taps W_ab · input[:, shift_ab ..]`, one
/// product per tap, `input` the band's first padded row of channel 0.
///
/// # Safety
/// `input` is [`super::layout::pad`]'s buffer from the band's first row of its image's channel 0, `wide`
/// holds `C_out·wide_len` values and `wide_len` is [`super::layout::wide_len`]'s for the band.
pub(super) unsafe fn gemm_products(
    wide: &mut [f32],
    wide_len: usize,
    input: &[f32],
    taps: &[f32],
    bias: Option<&[f32]>,
    shape: Shape,
) {
    let [padded_h, padded_w] = shape.padded_size();
    let plane = padded_h * padded_w;
    let (c_in, c_out) = (shape.channels_in, shape.channels_out);
    let mut read = false;
    if let Some(bias) = bias {
        for (o, &value) in bias.iter().enumerate() {
            wide[o * wide_len..][..wide_len].fill(value);
        }
        read = true;
    }
    for (tap, &shift) in shape.shifts().iter().enumerate() {
        let tap = &taps[tap * c_out * c_in..][..c_out * c_in];
        let shifted = &input[shift..];
        // SAFETY: the last value read, channel C_in − 1 at q = wide_len − 1 for tap (a, b),
        // is at (C_in − 1)·plane + (rows.end − 1 + a)·W_p + b + W_p − 1 + ROW_MULTIPLE − 1 <
        // C_in·plane + K_w + ROW_MULTIPLE from the image's first padded value
        // (rows.end − 1 + a < H_p), which `pad` leaves in the buffer; `wide` holds
        // C_out·wide_len values; `tap` C_out·C_in.
        product(
            [wide_len, c_out, c_in],
            (wide.as_mut_ptr(), wide_len),
            read,
            (shifted.as_ptr(), plane),
            (tap.as_ptr(), c_in),
        );
        read = true;
    }
}

/// `dst (+)= lhs · rhs` on this thread (gemm), `[m, n, k]` the sizes: `dst` `m x n`, `lhs`
/// `m x k`, `rhs` `k x n`, each given as its first value and the distance between its columns
/// (its rows are adjacent); `read` adds to what `dst` holds, else overwrites it.
///
/// # Safety
/// Each pointer reaches every value of its matrix so laid out.
pub(super) unsafe fn product(
    [m, n, k]: [usize; 3],
    (dst, dst_columns): (*mut f32, usize),
    read: bool,
    (lhs, lhs_columns): (*const f32, usize),
    (rhs, rhs_columns): (*const f32, usize),
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_columns as isize,
        1,
        read,
        lhs,
        lhs_columns as isize,
        1,
        rhs,
        rhs_columns as isize,
        1,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}
