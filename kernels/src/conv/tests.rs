//! The convolution's tests: each kind of products against the definition in f64.
use super::*;
use crate::{values, worst};

/// The convolution by its definition, in f64.
fn by_definition(x: &[f32], weight: &[f32], bias: Option<&[f32]>, s: Shape) -> Vec<f32> {
    let [h, w] = s.size;
    let [oh, ow] = s.out_size();
    let [kh, kw] = s.kernel;
    let mut out = vec![0f32; s.batch * s.channels_out * oh * ow];
    for n in 0..s.batch {
        for o in 0..s.channels_out {
            for y in 0..oh {
                for z in 0..ow {
                    let mut sum = bias.map_or(0.0, |b| b[o] as f64);
                    for c in 0..s.channels_in {
                        for a in 0..kh {
                            for b in 0..kw {
                                let (yy, zz) = (y + a, z + b);
                                if yy < s.padding[0] || zz < s.padding[1] {
                                    continue;
                                }
                                let (yy, zz) = (yy - s.padding[0], zz - s.padding[1]);
                                if yy >= h || zz >= w {
                                    continue;
                                }
                                sum += weight[((o * s.channels_in + c) * kh + a) * kw + b] as f64
                                    * x[((n * s.channels_in + c) * h + yy) * w + zz] as f64;
                            }
                        }
                    }
                    out[((n * s.channels_out + o) * oh + y) * ow + z] = sum as f32;
                }
            }
        }
    }
    out
}

/// Each kind of bfloat16 products this CPU has (AMX, AVX512-BF16; the products module's
/// tests check that none is missed) against the definition (f64 loops) of the convolution
/// of the input and kernel rounded to bfloat16 (the bias is not): two groups of 16 output
/// channels and one alone, input channels in a whole chunk of 32 and a partial one, an odd
/// number of 16-pixel columns, several bands; the input in two parts; the BRN's LSTM shape
/// (96 → 128); and for the dot products, which take every shape, odd and small channel
/// counts (the input gradient of the first convolution: 32 → 6, and 3 → 5).
#[test]
fn the_bfloat16_products_are_the_convolution_of_rounded_operands() {
    let kinds = Products::all_mixed();
    if kinds.is_empty() {
        eprintln!("no bfloat16 products on this CPU: not tested here");
    }
    let round = super::super::bf16::rounded;
    let shape = Shape::same_3x3;
    for (i, shape) in [
        shape(2, 40, [37, 29], 48),
        shape(1, 32, [8, 13], 32),
        shape(2, 96, [12, 12], 128),
        shape(1, 32, [20, 17], 6),
        shape(2, 3, [9, 40], 5),
    ]
    .into_iter()
    .enumerate()
    {
        let [h, w] = shape.size;
        let x = values(shape.batch * shape.channels_in * h * w, 40 + i as u64);
        let weight = values(
            shape.channels_out * shape.channels_in * shape.taps(),
            50 + i as u64,
        );
        let bias = values(shape.channels_out, 60 + i as u64);
        let reference = by_definition(&round(&x), &round(&weight), Some(&bias), shape);
        let exact = by_definition(&x, &weight, Some(&bias), shape);
        let plane = h * w;
        let split = (shape.channels_in / 2) * plane;
        let (first, second): (Vec<f32>, Vec<f32>) = if shape.batch == 1 {
            (x[..split].to_vec(), x[split..].to_vec())
        } else {
            (x.clone(), Vec::new())
        };
        let parts: Vec<&[f32]> = if shape.batch == 1 {
            vec![&first, &second]
        } else {
            vec![&first]
        };
        for &products in &kinds {
            if products.for_shape(shape) != products {
                continue; // a shape these products leave to the f32 ones
            }
            let ours = conv2d_on(
                products,
                &parts,
                &weight,
                Some(&bias),
                shape,
                After::Nothing,
            );
            let error = worst(&ours, &reference);
            assert!(error < 1e-4, "{products:?} {shape:?}: {error}");
            // And the rounding matters: the f32 convolution differs by more.
            let apart = worst(&ours, &exact);
            assert!(apart > 1e-3, "{products:?} {shape:?}: {apart}");
        }
    }
}

/// Against the definition (f64 loops): several bands per image (the last one short), rows
/// wider than a strip, images narrower than the kernel's reach, no padding, a non-square
/// kernel, no bias; the input whole and in two parts; each epilogue.
#[test]
fn the_banded_convolution_is_the_convolution() {
    for (i, shape) in [
        Shape::of([2, 3, 5], [40, 50], [3, 3], [1, 1]),
        Shape::of([1, 2, 3], [7, 2], [3, 3], [1, 1]),
        Shape::of([2, 4, 2], [9, 30], [3, 2], [0, 0]),
        Shape::of([1, 6, 4], [300, 5], [3, 3], [2, 1]),
        Shape::of([2, 13, 11], [10, 21], [3, 3], [1, 1]),
        // More input channels than one run of a micro-kernel's tile sums (16).
        Shape::of([1, 37, 9], [6, 11], [3, 3], [1, 1]),
        // Rows wider than a strip of the narrow tiles (`narrow::STRIP`), bands of 2 rows.
        Shape::of([2, 5, 3], [7, 300], [3, 3], [1, 1]),
    ]
    .into_iter()
    .enumerate()
    {
        let [h, w] = shape.size;
        let x = values(shape.batch * shape.channels_in * h * w, i as u64);
        let weight = values(
            shape.channels_out * shape.channels_in * shape.kernel[0] * shape.kernel[1],
            10 + i as u64,
        );
        let bias = values(shape.channels_out, 20 + i as u64);
        let bias = (i != 2).then_some(bias.as_slice());
        let reference = by_definition(&x, &weight, bias, shape);
        let check = |ours: Vec<f32>, reference: Vec<f32>, what: &str| {
            assert_eq!(ours.len(), reference.len());
            let error = worst(&ours, &reference);
            assert!(error < 1e-4, "{shape:?} {what}: {error}");
        };
        for products in Products::all() {
            let check = |ours, reference, what: &str| {
                check(ours, reference, &format!("{products:?}, {what}"))
            };
            let conv2d = |x: &[&[f32]], after| conv2d_on(products, x, &weight, bias, shape, after);
            let ours = conv2d(&[&x], After::Nothing);
            check(ours, reference.clone(), "alone");

            // The input in two parts split along the channels (as if concatenated), and the
            // epilogues against the reference with ReLU and the shortcut applied after it.
            let plane = h * w;
            let part = |channels: std::ops::Range<usize>| -> Vec<f32> {
                (0..shape.batch)
                    .flat_map(|n| {
                        let image = &x[n * shape.channels_in * plane..];
                        image[channels.start * plane..channels.end * plane].to_vec()
                    })
                    .collect()
            };
            let split = shape.channels_in / 2;
            let (first, second) = (part(0..split), part(split..shape.channels_in));
            let parts: [&[f32]; 2] = [&first, &second];
            let relu = conv2d(&parts, After::Relu);
            check(
                relu,
                reference.iter().map(|v| v.max(0.0)).collect(),
                "parts, relu",
            );
            let shortcut = values(reference.len(), 30 + i as u64);
            let residual = conv2d(&parts, After::ReluAdd(&shortcut));
            check(
                residual,
                reference
                    .iter()
                    .zip(&shortcut)
                    .map(|(v, s)| (v.max(0.0) + s).max(0.0))
                    .collect(),
                "parts, relu + shortcut",
            );
        }
    }
}
