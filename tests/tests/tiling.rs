//! Tiled inference against whole-image inference of the same network on a real rainy photo:
//! the seams must be invisible (PSNR between the two 8-bit outputs ≥ 45 dB).

use burn_flex::Flex;
use model::image::to_u8;
use model::{BrnConfig, DerainOptions};
use tests::shared;

#[test]
fn tiled_output_matches_the_whole_image_output() {
    let Some(weights) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let Some(photo) = shared("data/rain100l/rainy/rain-001.png") else {
        return;
    };
    let device = Default::default();
    let net = model::load_weights::<Flex>(&weights, &BrnConfig::brn(), &device).unwrap();
    let picture = model::decode(&std::fs::read(photo).unwrap()).unwrap();

    let whole = DerainOptions {
        tile: picture.width.max(picture.height),
        ..DerainOptions::new(6)
    };
    let tiled = DerainOptions {
        tile: 160,
        ..DerainOptions::new(6)
    };
    let plan =
        model::tiling::TilePlan::new(picture.width, picture.height, tiled.tile, tiled.overlap);
    assert!(
        plan.tiles.len() >= 6,
        "the test exercises many seams ({} tiles)",
        plan.tiles.len()
    );

    let a = model::derain(&net, &picture, &whole, &device, |_, _| true)
        .unwrap()
        .background;
    let b = model::derain(&net, &picture, &tiled, &device, |_, _| true)
        .unwrap()
        .background;
    let mse = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            let d = to_u8(*x) as f64 - to_u8(*y) as f64;
            d * d
        })
        .sum::<f64>()
        / a.len() as f64;
    let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10();
    println!(
        "tiled ({} tiles of {}px, overlap {}) vs whole: PSNR {psnr:.2} dB",
        plan.tiles.len(),
        tiled.tile,
        tiled.overlap
    );
    assert!(psnr >= 45.0, "PSNR {psnr:.2} dB < 45 dB");
}
