//! Parity with the authors' PyTorch code: our network, loading the authors' checkpoints from
//! `../shared/weights`, must reproduce their outputs in `../shared/golden` (computed with
//! their code, float32 CPU) to 1e-5 max abs difference.

use burn::tensor::{Tensor, TensorData};
use burn_flex::Flex;
use model::BrnConfig;
use tests::{max_abs_diff, read_npy, shared};

type B = Flex;

fn input(name: &str) -> Option<Tensor<B, 4>> {
    let path = shared(&format!("golden/in_{name}.npy"))?;
    let (shape, values) = read_npy(&path);
    Some(Tensor::from_data(
        TensorData::new(values, shape),
        &Default::default(),
    ))
}

fn compare(label: &str, got: Tensor<B, 4>, golden: &str) -> Option<f32> {
    let path = shared(&format!("golden/{golden}.npy"))?;
    let (shape, want) = read_npy(&path);
    assert_eq!(got.dims().to_vec(), shape, "{label}");
    let got = got.into_data().into_vec::<f32>().unwrap();
    let diff = max_abs_diff(&got, &want);
    println!("{label}: max abs diff {diff:.2e}");
    assert!(diff <= 1e-5, "{label}: max abs diff {diff:e} > 1e-5");
    Some(diff)
}

#[test]
fn brn_matches_the_authors_outputs() {
    let device = Default::default();
    let mut worst = 0f32;
    for weights in ["Rain100L", "Rain100H"] {
        let Some(path) = shared(&format!("weights/brn/{weights}.pth")) else {
            return;
        };
        let net = model::load_weights::<B>(&path, &BrnConfig::brn(), &device).unwrap();
        for input_name in ["rand", "photo"] {
            let Some(x) = input(input_name) else { return };
            for stages in [6, 8] {
                let out = net.run(x.clone(), stages, false);
                let label = format!("brn_{weights}_{input_name}_T{stages}");
                for (tensor, suffix) in [(out.background, "x"), (out.rain.unwrap(), "r")] {
                    if let Some(d) = compare(
                        &format!("{label}_{suffix}"),
                        tensor,
                        &format!("{label}_{suffix}"),
                    ) {
                        worst = worst.max(d);
                    }
                }
            }
        }
    }
    println!("BRN parity: worst max abs diff {worst:.2e}");
}

#[test]
fn prenet_and_prn_match_the_authors_outputs() {
    let device = Default::default();
    for (file, config) in [
        ("Rain100L_PReNet6", BrnConfig::prenet()),
        ("Rain100L_PRN6", BrnConfig::prn()),
    ] {
        let Some(path) = shared(&format!("weights/prenet/{file}.pth")) else {
            return;
        };
        let net = model::load_weights::<B>(&path, &config, &device).unwrap();
        for input_name in ["rand", "photo"] {
            let Some(x) = input(input_name) else { return };
            let out = net.run(x, 6, false);
            let label = format!("prenet_{file}_{input_name}_T6_x");
            compare(&label, out.background, &label);
        }
    }
}

#[test]
fn every_published_checkpoint_loads_into_its_architecture() {
    let device = Default::default();
    let Some(brn_dir) = shared("weights/brn") else {
        return;
    };
    for entry in std::fs::read_dir(brn_dir).unwrap() {
        let path = entry.unwrap().path();
        model::load_weights::<B>(&path, &BrnConfig::brn(), &device)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let Some(prenet_dir) = shared("weights/prenet") else {
        return;
    };
    for entry in std::fs::read_dir(prenet_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let config = if name.contains("PRN") {
            BrnConfig::prn()
        } else if name.contains("GRU") {
            BrnConfig::prenet_gru()
        } else {
            BrnConfig::prenet()
        };
        model::load_weights::<B>(&path, &config, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_checkpoint_for_another_architecture_is_refused_by_name() {
    let device = Default::default();
    let Some(path) = shared("weights/prenet/Rain100L_PReNet6.pth") else {
        return;
    };
    let err = model::load_weights::<B>(&path, &BrnConfig::brn(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing: conv0_r.0.weight"), "{err}");
    assert!(
        err.contains("wrong shape: conv0.0.weight is [32, 6, 3, 3], expected [32, 9, 3, 3]"),
        "{err}"
    );
    let Some(path) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let err = model::load_weights::<B>(&path, &BrnConfig::prenet(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected: conv0_r.0.weight"), "{err}");
}

#[test]
fn a_truncated_checkpoint_is_refused() {
    let device = Default::default();
    let Some(path) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let dir = std::env::temp_dir().join(format!("brn-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for keep in [bytes.len() - 1000, bytes.len() / 2, 100, 4] {
        let cut = dir.join("cut.pth");
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let result = model::load_weights::<B>(&cut, &BrnConfig::brn(), &device);
        assert!(result.is_err(), "a file cut to {keep} bytes loaded");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
