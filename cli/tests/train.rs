//! Training end to end on a tiny network and generated photos: the loss falls, a resumed run
//! equals an uninterrupted one bit for bit, a run killed at any moment leaves a loadable
//! checkpoint, corrupt images are skipped, bad configs are refused clearly.

use std::path::{Path, PathBuf};
use std::process::Command;

use brn::train::{latest_checkpoint, train, TrainConfig, TrainState};
use burn::backend::Autodiff;
use burn_flex::Flex;
use image::{ImageBuffer, Rgb};
use model::BrnConfig;

type B = Autodiff<Flex>;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brn-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder of textured "photos" (and one corrupt file).
fn photos(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for k in 0..4u32 {
        ImageBuffer::from_fn(64, 48, |x, y| {
            let v = ((x * (k + 3) + y * (7 - k)) % 64) as u8 * 3;
            Rgb([v, 255 - v, ((x ^ y) * 4) as u8])
        })
        .save(photos.join(format!("p{k}.png")))
        .unwrap();
    }
    std::fs::write(photos.join("broken.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    photos
}

fn tiny_config(photos: &Path) -> TrainConfig {
    serde_json::from_value(serde_json::json!({
        "model": BrnConfig::brn().with_channels(8).with_stages(2).with_background_resblocks(1).with_rain_resblocks(1),
        "epochs": 4,
        "steps_per_epoch": 4,
        "batch_size": 2,
        "patch": 24,
        "lr": 0.003,
        "seed": 5,
        "clean": [photos],
        "validation": [photos],
        "validation_crop": 32,
        "checkpoint_every": 2,
    }))
    .unwrap()
}

/// The latest checkpoint's safetensors header (as JSON, so key order does not matter) and
/// its raw tensor bytes.
fn weights_of(dir: &Path) -> (serde_json::Value, Vec<u8>) {
    let latest = latest_checkpoint(dir).unwrap().expect("a checkpoint");
    let bytes = std::fs::read(latest.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

#[test]
fn a_few_steps_lower_the_loss() {
    let dir = temp_dir("loss");
    let config = tiny_config(&photos(&dir));
    let out = dir.join("run");
    let steps = train::<B>(config, &out, false, None, &[Default::default()]).unwrap();
    assert_eq!(steps, 16);
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    println!("epoch losses: {losses:?}");
    assert_eq!(losses.len(), 4);
    assert!(
        losses[3] < losses[0] - 0.02,
        "loss did not fall: {losses:?}"
    );
    let psnr: Vec<f64> = log
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert!(
        psnr.iter().all(|p| p.is_finite()),
        "validation scored every epoch: {psnr:?}"
    );
    // The progress plot is drawn beside the log.
    let plot = std::fs::read_to_string(out.join("progress.svg")).expect("progress.svg");
    assert!(
        plot.starts_with("<svg") && plot.contains("<polyline"),
        "{plot}"
    );

    // The run exports to a half-precision record that the derain command uses.
    let record = dir.join("web/model.safetensors");
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    let brn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_brn"))
            .args(args)
            .status()
            .unwrap()
    };
    assert!(brn(&[
        "export",
        "--checkpoint",
        out.to_str().unwrap(),
        "-o",
        record.to_str().unwrap(),
        "--f16"
    ])
    .success());
    assert!(dir.join("web/config.json").is_file());
    let photo = dir.join("photos/p0.png");
    assert!(brn(&[
        "derain",
        photo.to_str().unwrap(),
        "-o",
        dir.join("d").to_str().unwrap(),
        "--weights",
        record.to_str().unwrap()
    ])
    .success());
    assert!(dir.join("d/p0.png").is_file());

    // A record outside a run (a folder with model.safetensors and no state.json, as
    // scripts/blend-weights.py leaves one) exports by its own config: in f32, a record that
    // derains a photo to the same bytes as the export of the checkpoint it was copied from.
    let latest = std::fs::read_to_string(out.join("latest.json")).unwrap();
    let name: String = serde_json::from_str(&latest).unwrap();
    let checkpoint = out.join(name);
    let loose = dir.join("loose");
    std::fs::create_dir_all(&loose).unwrap();
    std::fs::copy(
        checkpoint.join("model.safetensors"),
        loose.join("model.safetensors"),
    )
    .unwrap();
    let (a, b) = (
        dir.join("a/model.safetensors"),
        dir.join("b/model.safetensors"),
    );
    for (from, to) in [(&checkpoint, &a), (&loose, &b)] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let (from, to) = (from.to_str().unwrap(), to.to_str().unwrap());
        assert!(brn(&["export", "--checkpoint", from, "-o", to]).success());
        let out = dir.join(format!("{to}-out"));
        let (out, photo) = (out.to_str().unwrap(), photo.to_str().unwrap());
        assert!(brn(&["derain", photo, "-o", out, "--weights", to]).success());
    }
    assert_eq!(
        std::fs::read(dir.join(format!("{}-out/p0.png", a.display()))).unwrap(),
        std::fs::read(dir.join(format!("{}-out/p0.png", b.display()))).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn resuming_gives_the_same_weights_as_an_uninterrupted_run() {
    let dir = temp_dir("resume");
    let config = TrainConfig {
        epochs: 2,
        ..tiny_config(&photos(&dir))
    };
    let device: burn_flex::FlexDevice = Default::default();
    let straight = dir.join("straight");
    train::<B>(config.clone(), &straight, false, None, &[device]).unwrap();
    let split = dir.join("split");
    assert_eq!(
        train::<B>(config.clone(), &split, false, Some(3), &[device]).unwrap(),
        3
    );
    assert_eq!(
        train::<B>(config.clone(), &split, true, None, &[device]).unwrap(),
        8
    );
    assert!(
        weights_of(&straight) == weights_of(&split),
        "resumed weights differ from the uninterrupted run's"
    );
    // A different config is refused on resume.
    let other = TrainConfig { lr: 0.1, ..config };
    let err = train::<B>(other, &split, true, None, &[device])
        .unwrap_err()
        .to_string();
    assert!(err.contains("config differs"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_killed_run_leaves_a_loadable_checkpoint() {
    let dir = temp_dir("kill");
    let config = TrainConfig {
        epochs: 50,
        checkpoint_every: 1,
        ..tiny_config(&photos(&dir))
    };
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let out = dir.join("run");
    for (round, delay_ms) in [1500u64, 2500, 3500].into_iter().enumerate() {
        let mut args = vec!["train".to_string()];
        if latest_checkpoint(&out).unwrap().is_none() {
            let _ = std::fs::remove_dir_all(&out);
            args.extend([
                "--config".into(),
                config_path.display().to_string(),
                "-o".into(),
                out.display().to_string(),
            ]);
        } else {
            args.extend(["--resume".into(), out.display().to_string()]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_brn"))
            .args(&args)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        if let Some(latest) = latest_checkpoint(&out).unwrap() {
            let state: TrainState =
                serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap())
                    .unwrap();
            model::load_weights::<Flex>(
                &latest.join("model.safetensors"),
                &config.model,
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("round {round}: step {} does not load: {e}", state.step));
            println!(
                "round {round}: killed after {delay_ms} ms, latest checkpoint step {} loads",
                state.step
            );
        }
    }
    assert!(
        latest_checkpoint(&out).unwrap().is_some(),
        "some checkpoint was written"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_configs_are_refused_clearly() {
    let dir = temp_dir("config");
    let photos = photos(&dir);
    let device: burn_flex::FlexDevice = Default::default();
    let cases = [
        (
            TrainConfig {
                batch_size: 0,
                ..tiny_config(&photos)
            },
            "batch_size",
        ),
        (
            TrainConfig {
                patch: 4,
                ..tiny_config(&photos)
            },
            "patch",
        ),
        (
            TrainConfig {
                lr: -1.0,
                ..tiny_config(&photos)
            },
            "lr",
        ),
        (
            TrainConfig {
                clean: vec![],
                ..tiny_config(&photos)
            },
            "training data",
        ),
        (
            TrainConfig {
                presets: vec!["drizzle".into()],
                ..tiny_config(&photos)
            },
            "drizzle",
        ),
        (
            TrainConfig {
                model: BrnConfig::brn().with_stages(0),
                ..tiny_config(&photos)
            },
            "stages",
        ),
    ];
    for (config, needle) in cases {
        let err = train::<B>(config, &dir.join("run"), false, Some(1), &[device])
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // Unknown fields in a config file are named.
    let path = dir.join("typo.json");
    std::fs::write(&path, r#"{"model": {}, "clean": ["x"], "epoch": 3}"#).unwrap();
    let err = format!("{:#}", TrainConfig::load(&path).unwrap_err());
    assert!(err.contains("epoch"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_nan_loss_stops_and_names_the_last_good_checkpoint() {
    let dir = temp_dir("nan");
    // An absurd learning rate blows the weights up within a few steps.
    let config = TrainConfig {
        lr: 1e30,
        checkpoint_every: 1,
        ..tiny_config(&photos(&dir))
    };
    let out = dir.join("run");
    let err = format!(
        "{:#}",
        train::<B>(config, &out, false, Some(12), &[Default::default()]).unwrap_err()
    );
    println!("{err}");
    assert!(err.contains("the loss became"), "{err}");
    let latest = latest_checkpoint(&out)
        .unwrap()
        .expect("a good checkpoint before the NaN");
    assert!(err.contains(&latest.display().to_string()), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_cleanly() {
    let dir = temp_dir("ctrlc");
    let config = TrainConfig {
        epochs: 1000,
        checkpoint_every: 1000,
        ..tiny_config(&photos(&dir))
    };
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let out = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brn"))
        .args(["train", "--config"])
        .arg(&config_path)
        .arg("-o")
        .arg(&out)
        .spawn()
        .unwrap();
    // Once the run has trained its first epoch (its `log.csv` row is written after the steps;
    // the handler is installed before), interrupt it; no checkpoint is due for 1000 steps.
    // Waits on the run's progress, not on the clock: a busy machine only makes it slower.
    while !out.join("log.csv").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended before its first epoch: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "Ctrl-C exits cleanly, got {status}");
    let latest = latest_checkpoint(&out)
        .unwrap()
        .expect("Ctrl-C saved a checkpoint");
    let state: TrainState =
        serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap()).unwrap();
    assert!(state.step > 0 && state.step < 1000, "step {}", state.step);
    println!(
        "interrupted at step {}, checkpoint {}",
        state.step,
        latest.display()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The float32 tensors of a run's latest checkpoint, by name.
fn tensors_of(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let (header, bytes) = weights_of(dir);
    let mut out: Vec<(String, Vec<f32>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, info)| {
            assert_eq!(info["dtype"], "F32");
            let [from, to] = [0, 1].map(|i| info["data_offsets"][i].as_u64().unwrap() as usize);
            let values = bytes[from..to]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name.clone(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn data_parallel_training_matches_one_device() {
    // Two replicas (flex has one CPU device, so both live on it, each on its own thread) take
    // 1 and 2 images of a batch of 3; their gradients, weighted by share and summed on the
    // first device, must equal the whole batch's, so three steps land on the one-device weights
    // up to float rounding.
    let dir = temp_dir("parallel");
    let config = TrainConfig {
        batch_size: 3,
        ..tiny_config(&photos(&dir))
    };
    let device: burn_flex::FlexDevice = Default::default();
    let (one, two) = (dir.join("one"), dir.join("two"));
    train::<B>(config.clone(), &one, false, Some(3), &[device]).unwrap();
    train::<B>(config.clone(), &two, false, Some(3), &[device, device]).unwrap();
    let difference = max_difference(&tensors_of(&one), &tensors_of(&two));
    println!("one device vs two: weights differ by at most {difference:e}");
    assert!(
        difference < 1e-4,
        "data-parallel weights differ by {difference}"
    );
    // More devices than images is refused.
    let err = train::<B>(
        TrainConfig {
            batch_size: 1,
            ..config
        },
        &dir.join("three"),
        false,
        Some(1),
        &[device, device],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("smaller than the number of devices"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn init_starts_a_run_from_given_weights() {
    // A run initialised from another run's checkpoint, trained one step at a vanishing learning
    // rate, still holds that checkpoint's weights (a random start would be far off); a record
    // of another architecture is refused by name.
    let dir = temp_dir("init");
    let config = tiny_config(&photos(&dir));
    let device: burn_flex::FlexDevice = Default::default();
    let first = dir.join("first");
    train::<B>(config.clone(), &first, false, Some(2), &[device]).unwrap();
    let record = latest_checkpoint(&first)
        .unwrap()
        .unwrap()
        .join("model.safetensors");
    let second = dir.join("second");
    let init = TrainConfig {
        init: Some(record.clone()),
        lr: 1e-12,
        seed: 99,
        model: config.model.clone().with_stages(3),
        ..config.clone()
    };
    train::<B>(init, &second, false, Some(1), &[device]).unwrap();
    let difference = max_difference(&tensors_of(&first), &tensors_of(&second));
    assert!(
        difference < 1e-6,
        "the run did not start from the record: {difference}"
    );
    let other = TrainConfig {
        init: Some(record),
        model: config.model.clone().with_channels(4),
        ..config
    };
    let err = format!(
        "{:#}",
        train::<B>(other, &dir.join("third"), false, Some(1), &[device]).unwrap_err()
    );
    assert!(err.contains("init"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Mean absolute difference of two runs' weights.
fn mean_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f64 {
    let (mut sum, mut count) = (0.0, 0usize);
    for ((_, va), (_, vb)) in a.iter().zip(b) {
        for (x, y) in va.iter().zip(vb) {
            sum += (x - y).abs() as f64;
            count += 1;
        }
    }
    sum / count as f64
}

/// `brn train --mixed-precision` (bfloat16 convolutions where the CPU has AMX or AVX512_BF16)
/// trains the network that f32 trains: three steps land on the f32 run's third step far closer
/// (mean difference) than its third step moved the weights. 16 channels, so that the tile
/// products take every ResBlock and LSTM convolution. On a CPU with neither the flag warns and
/// the run is f32, the same bits. Each run's `sessions.log` names the products it used.
#[test]
fn mixed_precision_trains_as_f32_does() {
    let dir = temp_dir("mixed");
    let config = TrainConfig {
        model: BrnConfig::brn()
            .with_channels(16)
            .with_stages(2)
            .with_background_resblocks(1)
            .with_rain_resblocks(1),
        checkpoint_every: 1,
        ..tiny_config(&photos(&dir))
    };
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let brn = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brn"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "brn {args:?}: {stderr}");
        stderr
    };
    let (f32_run, mixed_run) = (dir.join("f32"), dir.join("mixed"));
    let config_arg = config_path.to_str().unwrap();
    brn(&[
        "train",
        "--config",
        config_arg,
        "-o",
        f32_run.to_str().unwrap(),
        "--max-steps",
        "2",
    ]);
    let second = tensors_of(&f32_run);
    brn(&[
        "train",
        "--resume",
        f32_run.to_str().unwrap(),
        "--max-steps",
        "1",
    ]);
    let third = tensors_of(&f32_run);
    let note = brn(&[
        "train",
        "--config",
        config_arg,
        "-o",
        mixed_run.to_str().unwrap(),
        "--max-steps",
        "3",
        "--mixed-precision",
    ]);
    let mixed = tensors_of(&mixed_run);
    let (apart, moved) = (
        mean_difference(&mixed, &third),
        mean_difference(&third, &second),
    );
    println!("mixed vs f32 after 3 steps: {apart:e} (mean); the third step moved {moved:e}");
    let sessions =
        |run: &std::path::Path| std::fs::read_to_string(run.join("sessions.log")).unwrap();
    assert!(
        sessions(&f32_run).contains("convolutions: "),
        "{}",
        sessions(&f32_run)
    );
    assert_eq!(
        sessions(&f32_run).lines().count(),
        2,
        "started, then resumed"
    );
    if note.contains("--mixed-precision cannot apply") {
        assert_eq!(apart, 0.0, "without bfloat16 products the run is f32");
    } else {
        assert!(
            sessions(&mixed_run).contains("bfloat16 operands"),
            "{}",
            sessions(&mixed_run)
        );
        assert!(apart > 0.0, "the bfloat16 products were taken");
        assert!(
            apart < 0.1 * moved,
            "mixed {apart:e} apart, a step {moved:e}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_checkpointed_on_one_backend_continues_on_another() {
    // Two steps on flex, then two more resumed on burn's ndarray backend with the photos in
    // another folder (as a run moves from a CUDA machine to a CPU one): the result matches
    // four steps on flex up to the backends' float rounding, far closer than the two resumed
    // steps moved the weights.
    type Other = Autodiff<burn_ndarray::NdArray>;
    let dir = temp_dir("backends");
    let config = tiny_config(&photos(&dir));
    let flex: burn_flex::FlexDevice = Default::default();
    let straight = dir.join("straight");
    train::<B>(config.clone(), &straight, false, Some(4), &[flex]).unwrap();
    let moved = dir.join("moved");
    train::<B>(config.clone(), &moved, false, Some(2), &[flex]).unwrap();
    let halfway = tensors_of(&moved);
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for entry in std::fs::read_dir(&config.clean[0]).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, elsewhere.join(path.file_name().unwrap())).unwrap();
    }
    let relocated = TrainConfig {
        clean: vec![elsewhere.clone()],
        validation: vec![elsewhere],
        ..config
    };
    assert_eq!(
        train::<Other>(relocated, &moved, true, Some(2), &[Default::default()]).unwrap(),
        4
    );
    let (straight, moved) = (tensors_of(&straight), tensors_of(&moved));
    let across = mean_difference(&straight, &moved);
    let progress = mean_difference(&halfway, &moved);
    println!(
        "flex vs flex+ndarray: mean |Δw| {across:e}; the two resumed steps moved {progress:e}"
    );
    assert!(
        progress > 0.0 && across < progress / 100.0,
        "{across} vs {progress}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_time_limit_stops_with_a_checkpoint_and_exit_code_zero() {
    // `brn train --time-limit 4s` on a run of 4000 steps stops early with exit code 0, leaves
    // a checkpoint short of the end, and `--resume` continues from exactly that step.
    let dir = temp_dir("timelimit");
    let config = TrainConfig {
        epochs: 1000,
        checkpoint_every: 1000,
        ..tiny_config(&photos(&dir))
    };
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let out = dir.join("run");
    let result = Command::new(env!("CARGO_BIN_EXE_brn"))
        .args(["train", "--time-limit", "4s", "--config"])
        .arg(&config_path)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    // The run says why it stopped; how long the process took is not asserted (it depends on
    // how busy the machine is), the step it stopped at shows it did not run to the end.
    assert!(stderr.contains("time limit reached"), "{stderr}");
    let state = |out: &Path| -> TrainState {
        let latest = latest_checkpoint(out).unwrap().expect("a checkpoint");
        serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap()).unwrap()
    };
    let stopped = state(&out).step;
    assert!(stopped > 0 && stopped < 4000, "step {stopped}");
    let resumed = Command::new(env!("CARGO_BIN_EXE_brn"))
        .args(["train", "--max-steps", "2", "--resume"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(state(&out).step, stopped + 2);
    println!("stopped at step {stopped}; resumed to {}", stopped + 2);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two training steps on the GPU (wgpu; Mesa's lavapipe in `test.sh`), whose convolutions'
/// weight gradients are split into bands of rows (`model::backend::banded`; 48-px
/// patches make three bands, the last one padded), land on the CPU's two steps (burn's own
/// weight gradient on flex) far closer than the second step moved the weights. Skipped without
/// a Vulkan driver, unless BRN_REQUIRE_GPU is set.
#[cfg(feature = "gpu")]
#[test]
fn the_gpu_trains_as_the_cpu_does() {
    if let Err(why) = brn::device::start_gpu() {
        assert!(std::env::var_os("BRN_REQUIRE_GPU").is_none(), "{why}");
        eprintln!("SKIPPED: {why}; set BRN_REQUIRE_GPU to fail instead");
        return;
    }
    type Gpu = Autodiff<burn_wgpu::Wgpu>;
    let dir = temp_dir("gpu");
    let config = TrainConfig {
        patch: 48,
        ..tiny_config(&photos(&dir))
    };
    let flex: burn_flex::FlexDevice = Default::default();
    // Both start from the same weights (each backend draws its own random initialisation).
    let start = dir.join("start");
    train::<B>(config.clone(), &start, false, Some(1), &[flex]).unwrap();
    let config = TrainConfig {
        init: Some(
            latest_checkpoint(&start)
                .unwrap()
                .unwrap()
                .join("model.safetensors"),
        ),
        ..config
    };
    let (one, two, gpu) = (dir.join("one"), dir.join("two"), dir.join("gpu"));
    train::<B>(config.clone(), &one, false, Some(1), &[flex]).unwrap();
    train::<B>(config.clone(), &two, false, Some(2), &[flex]).unwrap();
    train::<Gpu>(config, &gpu, false, Some(2), &[Default::default()]).unwrap();
    let (one, two, gpu) = (tensors_of(&one), tensors_of(&two), tensors_of(&gpu));
    let across = mean_difference(&two, &gpu);
    let progress = mean_difference(&one, &two);
    println!(
        "gpu vs cpu after two steps: mean |Δw| {across:e}; the second step moved {progress:e}"
    );
    assert!(
        progress > 0.0 && across < progress / 20.0,
        "{across} vs {progress}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
