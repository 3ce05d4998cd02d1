//! The convolution's products ([`super::conv`]'s forward and input gradient) on Intel's AMX
//! tile unit, in mixed precision: the input and the kernel rounded to bfloat16, every sum in
//! f32. Training only, and only when asked (`products::Precision::Mixed`): inference
//! and the parity tests stay in f32.
//!
//! One `TDPBF16PS` multiplies a 16 x 32 tile of bfloat16 by a 32 x 16 one into a 16 x 16 tile
//! of f32 sums, 8,192 multiply-adds where an AVX-512 fused multiply-add does 16. Here the
//! product's rows are 16 output channels (the kernel at one tap, 32 input channels: [`pack`]),
//! its columns 16 pixels of the wide output, and its right-hand side the padded input at the
//! tap's shift, read in place: [`super::bf16::pad_pairs`] stores the input as pairs of channels, each pixel
//! one 32-bit word holding channel `2k` (low half) and `2k + 1` (high half), which is the tile
//! unit's layout for a right-hand side whose rows are channel pairs, 16 pixels a row, the
//! pair planes `plane` words apart. So a tap's shift moves the load, nothing is copied per tap.
//!
//! Each step holds a 32 x 32 block of the wide output in four accumulator tiles (two groups of
//! 16 channels by two of 16 pixels), starts it from the bias, adds every tap of every 32-channel
//! chunk of the input, and stores it straight into the wide output, channel rows `wide_len`
//! apart. Each output value is one band's, summed in an order fixed by the shape.
//!
//! Contract: as [`super::conv`]; `C_out` a multiple of 16 and `C_in` at least 16
//! ([`applies`]; other shapes take the f32 products). Linux on x86-64 only: the kernel must
//! grant the process the tile state ([`available`] asks once).

use std::arch::asm;
use std::sync::OnceLock;

use super::bf16::{bf16, WEIGHT_PIXELS};

/// Output channels in a tile's rows.
const GROUP: usize = 16;
/// Pixels in a tile's columns.
const PIXELS: usize = 16;
/// Input channels that one tile product sums (16 pairs).
const CHUNK: usize = 32;
/// Channel pairs in a chunk.
const PAIRS: usize = CHUNK / 2;
/// Values in a packed kernel tile (16 output channels by 32 input channels).
const KERNEL_TILE: usize = GROUP * CHUNK;
/// Values in an accumulator tile.
const OUTPUT_TILE: usize = GROUP * PIXELS;

/// Whether this CPU has AMX with bfloat16, `BRN_SIMD` allows AVX-512 and what comes with it
/// ([`super::simd`]) and the OS lets this process use it (checked once: the first call asks
/// Linux for the tile state, as the kernel requires before a first use).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
        #[allow(unused_unsafe)]
        let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
        let cpu = leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
        super::simd::Simd::Avx512.allowed() && cpu && request_tile_state()
    })
}

/// Asks Linux for permission to use the AMX tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`), granted to the whole process.
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: the system call reads its two integers only.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// Whether a convolution of these channel counts takes the tile products: whole groups of 16
/// output channels, and enough input channels to be worth a 32-channel chunk.
pub(super) fn applies(c_out: usize, c_in: usize) -> bool {
    c_out.is_multiple_of(GROUP) && c_in >= GROUP
}

/// The kernel `taps[tap][o][c]` (`[K_h·K_w][C_out][C_in]`) in bfloat16, as [`products`] reads
/// it: per tap, per group of 16 output channels, per chunk of 32 input channels, a 16 x 32 tile
/// (rows the output channels, zeros past `C_in`).
pub(super) fn pack(taps: &[f32], taps_count: usize, c_out: usize, c_in: usize) -> Vec<u16> {
    let (groups, chunks) = (c_out / GROUP, c_in.div_ceil(CHUNK));
    let mut packed = vec![0u16; taps_count * groups * chunks * KERNEL_TILE];
    for tap in 0..taps_count {
        for o in 0..c_out {
            for c in 0..c_in {
                let tile = (tap * groups + o / GROUP) * chunks + c / CHUNK;
                packed[tile * KERNEL_TILE + (o % GROUP) * CHUNK + c % CHUNK] =
                    bf16(taps[(tap * c_out + o) * c_in + c]) as u16;
            }
        }
    }
    packed
}

/// The bias as tiles to start the sums from: per group, 16 rows of 16 copies of its channel's
/// bias (zeros without one).
pub(super) fn bias_tiles(bias: Option<&[f32]>, c_out: usize) -> Vec<f32> {
    let mut tiles = vec![0f32; c_out.div_ceil(GROUP) * OUTPUT_TILE];
    if let Some(bias) = bias {
        for (row, &value) in tiles.chunks_exact_mut(PIXELS).zip(bias) {
            row.fill(value);
        }
    }
    tiles
}

/// Channel pairs per image in the input that [`products`] reads ([`super::bf16::pad_pairs`]):
/// `C_in` rounded up to whole chunks.
pub(super) fn pairs(c_in: usize) -> usize {
    c_in.div_ceil(CHUNK) * PAIRS
}

/// The tile configuration (palette 1): tiles 0–3 accumulate (16 rows of 16 f32), 4–5 hold
/// kernel tiles (16 rows of 32 bfloat16), 6–7 input tiles (16 rows of 16 pairs); every row 64
/// bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

static CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    bytes_per_row: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Where the accumulator tiles 0–3 of a 2 x 2 block (of 16 x 16 f32 tiles) live in memory:
/// tile 0 at `at[0]` (top left), 1 at `at[1]` (top right), 2 at `at[2]` (bottom left), 3 at
/// `at[3]` (bottom right), each tile's rows `stride` bytes apart; the bottom tiles only with
/// `two_rows`, the right ones only with `two_columns`.
struct Block {
    at: [*mut f32; 4],
    stride: usize,
    two_rows: bool,
    two_columns: bool,
}

impl Block {
    /// The block's tiles from memory into tiles 0–3.
    ///
    /// # Safety
    /// The tile configuration is loaded; each tile taken is 16 rows of 64 readable bytes.
    #[inline(always)]
    unsafe fn load(&self) {
        let ([a, b, c, d], s) = (self.at, self.stride);
        // SAFETY: the caller's promise.
        unsafe {
            asm!(
                "tileloadd tmm0, [{a} + {s}]",
                a = in(reg) a,
                s = in(reg) s,
                options(nostack, readonly)
            );
            if self.two_columns {
                asm!(
                    "tileloadd tmm1, [{b} + {s}]",
                    b = in(reg) b,
                    s = in(reg) s,
                    options(nostack, readonly)
                );
            }
            if self.two_rows {
                asm!(
                    "tileloadd tmm2, [{c} + {s}]",
                    c = in(reg) c,
                    s = in(reg) s,
                    options(nostack, readonly)
                );
                if self.two_columns {
                    asm!(
                        "tileloadd tmm3, [{d} + {s}]",
                        d = in(reg) d,
                        s = in(reg) s,
                        options(nostack, readonly)
                    );
                }
            }
        }
    }

    /// Tiles 0–3 into the block's memory.
    ///
    /// # Safety
    /// As [`Block::load`], the bytes writable.
    #[inline(always)]
    unsafe fn store(&self) {
        let ([a, b, c, d], s) = (self.at, self.stride);
        // SAFETY: the caller's promise.
        unsafe {
            asm!(
                "tilestored [{a} + {s}], tmm0",
                a = in(reg) a,
                s = in(reg) s,
                options(nostack)
            );
            if self.two_columns {
                asm!(
                    "tilestored [{b} + {s}], tmm1",
                    b = in(reg) b,
                    s = in(reg) s,
                    options(nostack)
                );
            }
            if self.two_rows {
                asm!(
                    "tilestored [{c} + {s}], tmm2",
                    c = in(reg) c,
                    s = in(reg) s,
                    options(nostack)
                );
                if self.two_columns {
                    asm!(
                        "tilestored [{d} + {s}], tmm3",
                        d = in(reg) d,
                        s = in(reg) s,
                        options(nostack)
                    );
                }
            }
        }
    }
}

/// One band's wide output, `wide[o][q] = bias[o] + Σ_c Σ_tap w[o, c, tap] ·
/// input[c, shifts[tap] + q]` for `q < wide_len` (a multiple of 16) and every output channel,
/// the input and kernel in bfloat16.
///
/// # Safety
/// [`available`] has returned true; [`applies`] holds for `c_out`, `c_in`; `wide` holds
/// `c_out·wide_len` floats; `input` is [`super::bf16::pad_pairs`]'s words (for [`pairs`]) from the band's first pixel of
/// its image's first pair and reaches `(pairs(c_in) − 1)·plane + max(shifts) + wide_len` words;
/// `packed` is [`pack`]'s for `shifts.len()` taps, `c_out` and `c_in`; `bias` is
/// [`bias_tiles`]'s for `c_out`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn products(
    wide: *mut f32,
    wide_len: usize,
    input: *const u32,
    plane: usize,
    shifts: &[usize],
    packed: &[u16],
    [c_out, c_in]: [usize; 2],
    bias: &[f32],
) {
    debug_assert_eq!(wide_len % PIXELS, 0);
    debug_assert!(applies(c_out, c_in));
    let (groups, chunks) = (c_out / GROUP, c_in.div_ceil(CHUNK));
    let (pair_stride, wide_stride) = (plane * 4, wide_len * 4);
    // SAFETY (every block below): the tiles read and write within the buffers the contract
    // promises: kernel tiles in `packed`, input rows within `input`'s reach (16 pairs
    // `plane` words apart, 16 words each, from the chunk's first pair at shift + q), bias
    // tiles in `bias`, output rows `o < c_out` at `q .. q + 16 ≤ wide_len`.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
    let mut q = 0;
    while q < wide_len {
        let two_columns = wide_len - q >= 2 * PIXELS;
        let mut group = 0;
        while group < groups {
            let two_rows = groups - group >= 2;
            // Every pixel column starts from its group's bias tile.
            let bias = bias[group * OUTPUT_TILE..].as_ptr();
            let below = bias.wrapping_add(OUTPUT_TILE);
            let starts = Block {
                at: [bias, bias, below, below].map(|p| p.cast_mut()),
                stride: 64,
                two_rows,
                two_columns: true,
            };
            unsafe { starts.load() };
            for (tap, &shift) in shifts.iter().enumerate() {
                for chunk in 0..chunks {
                    let kernel =
                        packed[((tap * groups + group) * chunks + chunk) * KERNEL_TILE..].as_ptr();
                    let x = unsafe { input.add(chunk * PAIRS * plane + shift + q) };
                    unsafe {
                        asm!(
                            "tileloadd tmm4, [{k} + {ks}]",
                            "tileloadd tmm6, [{x} + {xs}]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            k = in(reg) kernel, ks = in(reg) 64usize,
                            x = in(reg) x, xs = in(reg) pair_stride,
                            options(nostack, readonly)
                        );
                        if two_columns {
                            asm!(
                                "tileloadd tmm7, [{x} + {xs}]",
                                "tdpbf16ps tmm1, tmm4, tmm7",
                                x = in(reg) x.add(PIXELS), xs = in(reg) pair_stride,
                                options(nostack, readonly)
                            );
                        }
                        if two_rows {
                            asm!(
                                "tileloadd tmm5, [{k} + {ks}]",
                                "tdpbf16ps tmm2, tmm5, tmm6",
                                k = in(reg) kernel.add(chunks * KERNEL_TILE), ks = in(reg) 64usize,
                                options(nostack, readonly)
                            );
                            if two_columns {
                                asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem));
                            }
                        }
                    }
                }
            }
            let out = wide.wrapping_add(group * GROUP * wide_len + q);
            let below = out.wrapping_add(GROUP * wide_len);
            let block = Block {
                at: [
                    out,
                    out.wrapping_add(PIXELS),
                    below,
                    below.wrapping_add(PIXELS),
                ],
                stride: wide_stride,
                two_rows,
                two_columns,
            };
            unsafe { block.store() };
            group += if two_rows { 2 } else { 1 };
        }
        q += if two_columns { 2 * PIXELS } else { PIXELS };
    }
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Whether the weight gradient of a convolution of these channel counts takes the tile
/// products: whole groups of 16 output and input channels.
pub(super) fn applies_to_weight_gradient(c_out: usize, c_in: usize) -> bool {
    c_out.is_multiple_of(GROUP) && c_in.is_multiple_of(GROUP)
}

/// `sum[tap][c][o] += Σ_q x[c][shifts[tap] + q] · dy[o][q]` for `q < len` on the tile unit,
/// from [`super::bf16::pad_bf16`]'s `input` (from the band's first pixel of its image's channel 0, planes
/// `plane` apart) and [`super::bf16::pack_output_grad`]'s `dy_pairs`; the operands in bfloat16, the sums
/// f32. (The kernel gradient's tiles are input channels by output channels, so the output
/// gradient is the operand in pairs, and the input is read in place at each tap's shift.)
///
/// # Safety
/// [`available`] has returned true; [`applies_to_weight_gradient`] holds for `c_out`, `c_in`;
/// `len` is a multiple of [`WEIGHT_PIXELS`]; `sum` holds `shifts.len()·c_in·c_out` floats,
/// `dy_pairs` `len/2·c_out` words; `input` reaches `(c_in − 1)·plane + max(shifts) + len`
/// values.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn weight_products(
    sum: &mut [f32],
    input: *const u16,
    plane: usize,
    dy_pairs: &[u32],
    len: usize,
    shifts: &[usize],
    [c_out, c_in]: [usize; 2],
) {
    debug_assert_eq!(len % WEIGHT_PIXELS, 0);
    debug_assert!(applies_to_weight_gradient(c_out, c_in));
    debug_assert!(sum.len() >= shifts.len() * c_out * c_in && dy_pairs.len() >= c_out * len / 2);
    let (rows, columns) = (c_in / GROUP, c_out / GROUP);
    // A kernel-gradient tile's rows are `c_out` floats apart; an input tile's (16 channels of
    // 32 pixels) `plane` values; an output-gradient tile's (pixel pairs) `c_out` words.
    let (sum_stride, input_stride, dy_stride) = (c_out * 4, plane * 2, c_out * 4);
    // SAFETY (every block below): the tiles read and write within what the contract
    // promises: kernel-gradient tiles at rows `c < c_in`, columns `o < c_out`; input rows
    // `c < c_in` up to pixel `shift + len − 1`; output-gradient pairs `k < len/2`.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
    for (tap, &shift) in shifts.iter().enumerate() {
        let mut row = 0;
        while row < rows {
            let two_rows = rows - row >= 2;
            let mut column = 0;
            while column < columns {
                let two_columns = columns - column >= 2;
                let out = sum[(tap * c_in + row * GROUP) * c_out + column * GROUP..].as_mut_ptr();
                let below = out.wrapping_add(GROUP * c_out);
                let block = Block {
                    at: [
                        out,
                        out.wrapping_add(GROUP),
                        below,
                        below.wrapping_add(GROUP),
                    ],
                    stride: sum_stride,
                    two_rows,
                    two_columns,
                };
                unsafe { block.load() };
                let mut q = 0;
                while q < len {
                    let x = unsafe { input.add(row * GROUP * plane + shift + q) };
                    let grad = dy_pairs[q / 2 * c_out + column * GROUP..].as_ptr();
                    unsafe {
                        asm!(
                            "tileloadd tmm4, [{x} + {xs}]",
                            "tileloadd tmm6, [{g} + {gs}]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            x = in(reg) x, xs = in(reg) input_stride,
                            g = in(reg) grad, gs = in(reg) dy_stride,
                            options(nostack, readonly)
                        );
                        if two_columns {
                            asm!(
                                "tileloadd tmm7, [{g} + {gs}]",
                                "tdpbf16ps tmm1, tmm4, tmm7",
                                g = in(reg) grad.add(GROUP), gs = in(reg) dy_stride,
                                options(nostack, readonly)
                            );
                        }
                        if two_rows {
                            asm!(
                                "tileloadd tmm5, [{x} + {xs}]",
                                "tdpbf16ps tmm2, tmm5, tmm6",
                                x = in(reg) x.add(GROUP * plane), xs = in(reg) input_stride,
                                options(nostack, readonly)
                            );
                            if two_columns {
                                asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem));
                            }
                        }
                    }
                    q += WEIGHT_PIXELS;
                }
                unsafe { block.store() };
                column += if two_columns { 2 } else { 1 };
            }
            row += if two_rows { 2 } else { 1 };
        }
    }
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}
