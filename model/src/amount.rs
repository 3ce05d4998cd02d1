//! The amount of deraining: the derained photo blended with its input in linear light, for
//! photos where the weights do too much. Shared by the page's view and download.

use crate::error::ModelError;

/// sRGB (IEC 61966-2-1) to linear light, for a value in [0, 1].
fn to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// Linear light to sRGB (IEC 61966-2-1), for a value in [0, 1].
fn to_srgb(l: f32) -> f32 {
    if l <= 0.003_130_8 {
        l * 12.92
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    }
}

/// `amount` (0 to 1, clamped) of the way from `input` to `derained`, both sRGB values in
/// [0, 1] (planar or interleaved alike, the same layout), blended in linear light: 0 gives the
/// input exactly, 1 the derained values exactly (values outside [0, 1] are clipped first).
pub fn blend(input: &[f32], derained: &[f32], amount: f32) -> Result<Vec<f32>, ModelError> {
    if input.len() != derained.len() {
        return Err(ModelError::InvalidConfig(format!(
            "the derained image ({} values) is not the size of its input ({} values)",
            derained.len(),
            input.len()
        )));
    }
    let amount = if amount.is_nan() {
        1.0
    } else {
        amount.clamp(0.0, 1.0)
    };
    if amount == 0.0 {
        return Ok(input.to_vec());
    }
    if amount == 1.0 {
        return Ok(derained.to_vec());
    }
    let mixed = input.iter().zip(derained).map(|(&a, &b)| {
        let (a, b) = (to_linear(a.clamp(0.0, 1.0)), to_linear(b.clamp(0.0, 1.0)));
        to_srgb(a + amount * (b - a))
    });
    Ok(mixed.collect())
}

/// The blend of two 8-bit values at one amount, as a table: entry `a * 256 + b` is what
/// [`blend`] makes of input level `a` and derained level `b`, stored as the page's downloads
/// store 8-bit values ([`crate::image::to_u8`]). The page's view looks a shown photo's pixels up
/// in it, so the view at an amount shows the pixels its download holds (for 8-bit photos).
pub fn table8(amount: f32) -> Vec<u8> {
    let level = |v: usize| v as f32 / 255.0;
    let input: Vec<f32> = (0..256 * 256).map(|i| level(i / 256)).collect();
    let derained: Vec<f32> = (0..256 * 256).map(|i| level(i % 256)).collect();
    blend(&input, &derained, amount)
        .expect("the two tables have one size")
        .into_iter()
        .map(crate::image::to_u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ends are the images themselves, bit for bit.
    #[test]
    fn none_is_the_input_and_all_is_the_derained() {
        let input = [0.0, 0.2, 0.5, 1.0, 0.73];
        let derained = [1.0, 0.1, 0.5, 0.0, 0.2];
        assert_eq!(blend(&input, &derained, 0.0).unwrap(), input);
        assert_eq!(blend(&input, &derained, 1.0).unwrap(), derained);
        assert_eq!(blend(&input, &derained, -3.0).unwrap(), input);
        assert_eq!(blend(&input, &derained, 7.0).unwrap(), derained);
    }

    /// Half way between black and white in linear light is linear 0.5, sRGB 0.735357 (188 of
    /// 255: the sRGB standard's curve, not the 0.5 of a blend of the encoded values); a
    /// quarter of the way is linear 0.25, sRGB 0.537099.
    #[test]
    fn the_blend_is_in_linear_light() {
        let half = blend(&[0.0], &[1.0], 0.5).unwrap()[0];
        assert!((half - 0.735_357).abs() < 1e-5, "{half}");
        assert_eq!((half * 255.0).round(), 188.0);
        let quarter = blend(&[0.0], &[1.0], 0.25).unwrap()[0];
        assert!((quarter - 0.537_099).abs() < 1e-5, "{quarter}");
        // Equal values stay what they are (to the curve's round trip).
        let same = blend(&[0.3], &[0.3], 0.4).unwrap()[0];
        assert!((same - 0.3).abs() < 1e-6, "{same}");
    }

    /// The table's ends are the input's and the derained levels for every pair; in between it
    /// holds the sRGB standard's linear-light blend written out here in f64 (within the one level
    /// that f32 and truncation may take off), e.g. half of black to white is 187 (187.5 stored
    /// by truncation, as the downloads store it).
    #[test]
    fn the_8_bit_table_is_the_blend_of_every_pair_of_levels() {
        let none = table8(0.0);
        let all = table8(1.0);
        for a in 0..256 {
            for b in 0..256 {
                assert_eq!(none[a * 256 + b] as usize, a, "0 %: {a}, {b}");
                assert_eq!(all[a * 256 + b] as usize, b, "100 %: {a}, {b}");
            }
        }
        let lin = |v: f64| {
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        let srgb = |l: f64| {
            if l <= 0.0031308 {
                l * 12.92
            } else {
                1.055 * l.powf(1.0 / 2.4) - 0.055
            }
        };
        for amount in [0.3f64, 0.5, 0.85] {
            let table = table8(amount as f32);
            for a in (0..256).step_by(5) {
                for b in (0..256).step_by(3) {
                    let (la, lb) = (lin(a as f64 / 255.0), lin(b as f64 / 255.0));
                    let want = srgb(la + amount * (lb - la)) * 255.0;
                    let got = table[a * 256 + b] as f64;
                    assert!(
                        got <= want + 1e-3 && got > want - 1.0 - 1e-3,
                        "{amount}: {a}, {b}: {got} vs {want}"
                    );
                }
            }
        }
        assert_eq!(table8(0.5)[255], 187);
    }

    #[test]
    fn images_of_two_sizes_are_refused() {
        let err = blend(&[0.0; 6], &[0.0; 3], 0.5).unwrap_err();
        assert!(err.to_string().contains("not the size"), "{err}");
    }
}
