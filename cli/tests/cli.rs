//! The `brn` command end to end: outputs, the paper's scores against the authors' own
//! per-image numbers (`../shared/golden/rain100l_T*.txt`), and every kind of bad input.

use std::path::{Path, PathBuf};

use std::process::{Command, Output};
use tests::shared;

use image::{DynamicImage, ImageBuffer, LumaA, Rgb, Rgba};

fn brn(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_brn"))
        .args(args)
        .output()
        .expect("brn runs");
    eprintln!(
        "brn {}\n--- status {:?}\n--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brn-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save(img: DynamicImage, path: &Path) {
    img.save(path).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn derain_keeps_size_depth_color_and_alpha_and_skips_bad_files() {
    let Some(weights) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let dir = temp_dir("derain");
    let input = dir.join("in");
    let output = dir.join("out");
    std::fs::create_dir_all(&input).unwrap();
    save(
        DynamicImage::from(ImageBuffer::from_fn(1, 1, |_, _| Rgb([200u8, 100, 50]))),
        &input.join("one.png"),
    );
    save(
        DynamicImage::from(ImageBuffer::from_fn(97, 61, |x, y| {
            Rgb([(x * 2) as u8, (y * 4) as u8, 128u8])
        })),
        &input.join("odd.png"),
    );
    save(
        DynamicImage::from(ImageBuffer::from_fn(33, 20, |x, y| {
            Rgba([x as u8 * 7, y as u8 * 12, 90u8, (x * 7) as u8])
        })),
        &input.join("alpha.png"),
    );
    save(
        DynamicImage::from(ImageBuffer::from_fn(24, 17, |x, y| {
            LumaA([x as u16 * 2000, 60000u16 - y as u16 * 100])
        })),
        &input.join("gray16.png"),
    );
    // Bad files beside the good ones.
    std::fs::write(input.join("empty.png"), b"").unwrap();
    std::fs::write(input.join("text.jpg"), b"this is not a jpeg").unwrap();
    let good = std::fs::read(input.join("odd.png")).unwrap();
    std::fs::write(input.join("truncated.png"), &good[..good.len() / 2]).unwrap();

    let out = brn(&[
        "derain",
        s(&input),
        "-o",
        s(&output),
        "--weights",
        s(&weights),
        "--stages",
        "2",
        "--tile",
        "64",
        "--rain-layer",
    ]);
    assert_eq!(out.status.code(), Some(1), "bad files make the exit code 1");
    let err = stderr(&out);
    for bad in ["empty.png", "text.jpg", "truncated.png"] {
        assert!(err.contains(bad), "{bad} is listed");
        assert!(
            !output.join(bad.replace(".jpg", ".png")).exists(),
            "nothing written for {bad}"
        );
    }
    assert!(err.contains("derained 4 of 7"), "{err}");

    let one = image::open(output.join("one.png")).unwrap();
    assert_eq!((one.width(), one.height()), (1, 1));
    let odd = image::open(output.join("odd.png")).unwrap();
    assert_eq!(
        (odd.width(), odd.height(), odd.color()),
        (97, 61, image::ColorType::Rgb8)
    );
    assert!(output.join("odd_rain.png").is_file());
    let alpha = image::open(output.join("alpha.png")).unwrap();
    assert_eq!(alpha.color(), image::ColorType::Rgba8);
    let src = image::open(input.join("alpha.png")).unwrap().to_rgba8();
    for (a, b) in alpha.to_rgba8().pixels().zip(src.pixels()) {
        assert_eq!(a[3], b[3], "alpha is passed through");
    }
    let gray = image::open(output.join("gray16.png")).unwrap();
    assert_eq!(gray.color(), image::ColorType::La16);
    // No temporary files are left behind.
    for entry in std::fs::read_dir(&output).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(!name.starts_with('.'), "leftover {name}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn all_stages_writes_every_stage_estimate() {
    let Some(weights) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let dir = temp_dir("stages");
    let input = dir.join("rain.png");
    save(
        DynamicImage::from(ImageBuffer::from_fn(20, 16, |x, y| {
            Rgb([x as u8 * 10, y as u8 * 10, 30u8])
        })),
        &input,
    );
    let out = brn(&[
        "derain",
        s(&input),
        "-o",
        s(&dir.join("o")),
        "--weights",
        s(&weights),
        "--stages",
        "3",
        "--all-stages",
    ]);
    assert!(out.status.success());
    for t in 1..=3 {
        for layer in ["x", "r"] {
            assert!(
                dir.join(format!("o/rain_stage{t}_{layer}.png")).is_file(),
                "stage {t} {layer}"
            );
        }
    }
    assert!(!dir.join("o/rain_stage4_x.png").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_arguments_and_weights_get_clear_errors() {
    let Some(weights) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let Some(prenet) = shared("weights/prenet/Rain100L_PReNet6.pth") else {
        return;
    };
    let dir = temp_dir("bad");
    let img = dir.join("a.png");
    save(
        DynamicImage::from(ImageBuffer::from_fn(8, 8, |_, _| Rgb([1u8, 2, 3]))),
        &img,
    );
    let out_dir = dir.join("out");

    let out = brn(&[
        "derain",
        s(&dir.join("missing.png")),
        "-o",
        s(&out_dir),
        "--weights",
        s(&weights),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.png"));

    let out = brn(&[
        "derain",
        s(&img),
        "-o",
        s(&out_dir),
        "--weights",
        s(&weights),
        "--stages",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 1"));

    let out = brn(&[
        "derain",
        s(&img),
        "-o",
        s(&out_dir),
        "--weights",
        s(&prenet),
        "--arch",
        "brn",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing: conv0_r.0.weight"));
    assert!(stderr(&out).contains("leave --arch out"));
    // Without --arch the file's own architecture (PReNet) is found from its tensors.
    let out = brn(&[
        "derain",
        s(&img),
        "-o",
        s(&dir.join("prenet-out")),
        "--weights",
        s(&prenet),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.join("prenet-out/a.png").is_file());

    let cut = dir.join("cut.pth");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = brn(&["derain", s(&img), "-o", s(&out_dir), "--weights", s(&cut)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cut.pth"));

    let not_weights = dir.join("w.bin");
    std::fs::write(&not_weights, b"").unwrap();
    let out = brn(&[
        "derain",
        s(&img),
        "-o",
        s(&out_dir),
        "--weights",
        s(&not_weights),
    ]);
    assert_eq!(out.status.code(), Some(2));

    // An output "folder" below a regular file cannot be created.
    let out = brn(&[
        "derain",
        s(&img),
        "-o",
        s(&img.join("sub")),
        "--weights",
        s(&weights),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("output folder"));

    let out = brn(&[
        "derain",
        s(&img),
        "-o",
        s(&out_dir),
        "--weights",
        s(&weights),
        "--arch",
        "resnet",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses unknown architectures"
    );
    let out = brn(&["bench", "--train", "--weight-gradient", "fast"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses it");
    assert!(stderr(&out).contains("banded or burn"), "{}", stderr(&out));
    assert!(
        !out_dir.join("a.png").exists(),
        "nothing was written by the failed runs"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_header_claiming_60000_pixels_per_side_is_refused() {
    let Some(weights) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let dir = temp_dir("huge");
    let path = dir.join("huge.png");
    std::fs::write(&path, model::image::png_claiming_size(60000, 60000)).unwrap();
    let out = brn(&[
        "derain",
        s(&path),
        "-o",
        s(&dir.join("o")),
        "--weights",
        s(&weights),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("60000x60000"),
        "names the claimed size"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Per-image Y-PSNR/SSIM of the authors' checkpoint as our `eval` computes it, against the
/// authors' own MATLAB-metric numbers in `golden/rain100l_T{6,8}.txt`.
#[test]
fn eval_reproduces_the_authors_per_image_scores() {
    let Some(weights) = shared("weights/brn/Rain100L.pth") else {
        return;
    };
    let Some(data) = shared("data/rain100l") else {
        return;
    };
    let limit: usize = std::env::var("BRN_EVAL_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for stages in [6, 8] {
        let Some(golden) = shared(&format!("golden/rain100l_T{stages}.txt")) else {
            return;
        };
        let golden = std::fs::read_to_string(golden).unwrap();
        let out = brn(&[
            "eval",
            "--weights",
            s(&weights),
            "--data",
            s(&data),
            "--stages",
            &stages.to_string(),
            "--json",
            "--limit",
            &limit.to_string(),
        ]);
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let images = report["images"].as_array().unwrap();
        assert_eq!(images.len(), limit);
        for image in images {
            let name = image["name"].as_str().unwrap();
            let line = golden.lines().find(|l| l.starts_with(name)).unwrap();
            let fields: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap())
                .collect();
            let (psnr, ssim) = (
                image["psnr"].as_f64().unwrap(),
                image["ssim"].as_f64().unwrap(),
            );
            println!(
                "T={stages} {name}: ours {psnr:.4} {ssim:.5}, authors {:.4} {:.5}",
                fields[0], fields[1]
            );
            assert!(
                (psnr - fields[0]).abs() <= 0.01,
                "{name} T={stages}: PSNR {psnr} vs {}",
                fields[0]
            );
            assert!(
                (ssim - fields[1]).abs() <= 0.0005,
                "{name} T={stages}: SSIM {ssim} vs {}",
                fields[1]
            );
        }
        assert!(report["mean"]["psnr"].as_f64().is_some());
    }
}

#[test]
fn bench_prints_json_with_the_documented_fields() {
    let out = brn(&[
        "bench", "--size", "32", "--stages", "1", "--runs", "2", "--json",
    ]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["size"], 32);
    assert_eq!(report["stages"], 1);
    assert_eq!(report["runs"], 2);
    assert!(report["median_s"].as_f64().unwrap() > 0.0);
    assert!(report["peak_rss_bytes"].as_u64().unwrap() > 0);
}

/// `BRN_SIMD` caps the kernels' instructions and the line saying what computes names the cap;
/// a value the kernels do not know is refused up front with the values they take, exit code 2.
#[test]
fn brn_simd_caps_the_kernels_or_is_refused() {
    let bench = |simd: &str| {
        Command::new(env!("CARGO_BIN_EXE_brn"))
            .args(["bench", "--size", "32", "--stages", "1", "--runs", "1"])
            .env("BRN_SIMD", simd)
            .output()
            .expect("brn runs")
    };
    let out = bench("none");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(capped by BRN_SIMD=none)"),
        "{}",
        stderr(&out)
    );
    let out = bench("avx3");
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("BRN_SIMD=avx3") && message.contains("avx2 or none"),
        "{message}"
    );
    assert!(out.stdout.is_empty());
}

/// Without --weights the command uses the built-in default weights: the same scores as the
/// committed record `weights/brn-default.safetensors`, and on light synthetic rain over 128x128
/// centre crops of Set5 (made by `brn synth`; Set5 is never trained on) every derained image has
/// a higher SSIM than its rainy input and the mean PSNR gains more than 1 dB (the paper's metric
/// for both). `--arch prenet` alone asks for a weights file.
#[test]
fn the_built_in_weights_derain_without_a_weights_flag() {
    let Some(set5) = shared("data/clean/set5") else {
        return;
    };
    let dir = temp_dir("default");
    let crops = dir.join("crops");
    std::fs::create_dir_all(&crops).unwrap();
    for entry in std::fs::read_dir(&set5).unwrap() {
        let path = entry.unwrap().path();
        let img = image::open(&path).unwrap();
        let (x, y) = ((img.width() - 128) / 2, (img.height() - 128) / 2);
        img.crop_imm(x, y, 128, 128)
            .save(crops.join(path.file_name().unwrap()))
            .unwrap();
    }
    let pairs = dir.join("pairs");
    let out = brn(&[
        "synth",
        "--clean",
        s(&crops),
        "-o",
        s(&pairs),
        "--preset",
        "light",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval", "--data", s(&pairs), "--json"];
        args.extend_from_slice(extra);
        let out = brn(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let built_in = eval(&[]);
    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights/brn-default.safetensors");
    assert_eq!(built_in, eval(&["--weights", s(&record)]));
    let images = built_in["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);
    for image in images {
        let field = |name: &str| image[name].as_f64().unwrap();
        println!(
            "{}: rainy input {:.2} dB / {:.4}, derained {:.2} dB / {:.4}",
            image["name"],
            field("input_psnr"),
            field("input_ssim"),
            field("psnr"),
            field("ssim")
        );
        assert!(field("ssim") > field("input_ssim"), "{}", image["name"]);
    }
    let (mean, input) = (&built_in["mean"], &built_in["input"]);
    assert!(
        mean["psnr"].as_f64().unwrap() > input["psnr"].as_f64().unwrap() + 1.0,
        "mean {mean} vs rainy input {input}"
    );
    let out = brn(&[
        "eval",
        "--data",
        s(&pairs),
        "--arch",
        "prenet",
        "--limit",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--weights FILE for --arch prenet"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The rainy input's score in `eval`'s report is the paper's metric of the input itself:
/// checked against `brn::eval::score` on Rain100L's first pair.
#[test]
fn eval_reports_the_rainy_inputs_own_score() {
    let (Some(weights), Some(data)) = (shared("weights/brn/Rain100L.pth"), shared("data/rain100l"))
    else {
        return;
    };
    let out = brn(&[
        "eval",
        "--weights",
        s(&weights),
        "--data",
        s(&data),
        "--stages",
        "1",
        "--json",
        "--limit",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pair = &brn::data::pairs(&data).unwrap()[0];
    let rainy = image::open(&pair.rainy).unwrap().to_rgb8();
    let clean = image::open(&pair.clean).unwrap().to_rgb8();
    let (w, h) = (rainy.width() as usize, rainy.height() as usize);
    let planar: Vec<f32> = (0..3)
        .flat_map(|c| rainy.pixels().map(move |p| p[c] as f32 / 255.0))
        .collect();
    let (psnr, ssim) = brn::eval::score(&planar, clean.as_raw(), w, h);
    let image = &report["images"][0];
    assert!((image["input_psnr"].as_f64().unwrap() - psnr).abs() < 1e-9);
    assert!((image["input_ssim"].as_f64().unwrap() - ssim).abs() < 1e-9);
    assert!((report["input"]["psnr"].as_f64().unwrap() - psnr).abs() < 1e-9);
}

/// PSNR in dB between two 8-bit RGB images of the same size.
fn psnr_rgb8(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

/// `--device gpu` (burn-wgpu on the platform's Vulkan, with the page's WGSL kernels; Mesa's
/// lavapipe where there is no GPU) derains as the CPU does: a 120x88 photo crop (Rain100L's
/// first image when `../shared` is there) in tiles forced to 64 px is within 40 dB PSNR of
/// `--device cpu`'s output; `--device auto` says which device it took. Without any Vulkan
/// driver the test is skipped, unless BRN_REQUIRE_GPU is set (test.sh installs lavapipe and
/// sets it), where it fails.
#[test]
fn the_gpu_derains_as_the_cpu_does() {
    let dir = temp_dir("gpu");
    let photo = dir.join("photo.png");
    let source = shared("data/rain100l/rainy/rain-001.png")
        .map(|p| image::open(p).unwrap().to_rgb8())
        .unwrap_or_else(|| {
            ImageBuffer::from_fn(200, 200, |x, y| {
                Rgb([
                    (x * 5 % 256) as u8,
                    (y * 3 % 256) as u8,
                    ((x ^ y) % 256) as u8,
                ])
            })
        });
    save(
        DynamicImage::from(image::imageops::crop_imm(&source, 40, 30, 120, 88).to_image()),
        &photo,
    );
    let run = |device: &str| {
        let out_dir = dir.join(device);
        let out = brn(&[
            "derain",
            s(&photo),
            "-o",
            s(&out_dir),
            "--stages",
            "3",
            "--tile",
            "64",
            "--device",
            device,
        ]);
        (out, out_dir.join("photo.png"))
    };
    let (cpu, cpu_png) = run("cpu");
    assert!(cpu.status.success());
    let (gpu, gpu_png) = run("gpu");
    if !gpu.status.success() && std::env::var_os("BRN_REQUIRE_GPU").is_none() {
        assert!(stderr(&gpu).contains("no usable GPU"), "{}", stderr(&gpu));
        eprintln!("SKIPPED: no Vulkan driver here (install mesa-vulkan-drivers); set BRN_REQUIRE_GPU to fail instead");
        return;
    }
    assert!(gpu.status.success(), "{}", stderr(&gpu));
    assert!(stderr(&gpu).contains("using the GPU"), "{}", stderr(&gpu));
    let psnr = psnr_rgb8(
        &image::open(&cpu_png).unwrap().to_rgb8(),
        &image::open(&gpu_png).unwrap().to_rgb8(),
    );
    println!("--device gpu vs cpu: {psnr:.1} dB");
    assert!(
        psnr >= 40.0,
        "GPU output differs from the CPU's: {psnr:.1} dB"
    );
    let (auto, _) = run("auto");
    assert!(auto.status.success());
    assert!(stderr(&auto).contains("using the GPU"), "{}", stderr(&auto));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two small textured photos and two grayscale streak layers (light lines on black).
fn photos_and_streaks(dir: &Path) -> (PathBuf, PathBuf) {
    let (photos, streaks) = (dir.join("photos"), dir.join("streaks"));
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::create_dir_all(&streaks).unwrap();
    for k in 0..2u32 {
        save(
            DynamicImage::from(ImageBuffer::from_fn(64, 48, |x, y| {
                Rgb([(x * 3 + k * 50) as u8, (y * 4) as u8, ((x ^ y) * 5) as u8])
            })),
            &photos.join(format!("p{k}.png")),
        );
        save(
            DynamicImage::from(ImageBuffer::from_fn(80, 60, |x, y| {
                image::Luma([if (x + 3 * k) % 7 == 0 && y % 11 < 8 {
                    230u8
                } else {
                    0
                }])
            })),
            &streaks.join(format!("{k}-5.png")),
        );
    }
    (photos, streaks)
}

/// `brn synth` of the photos in `clean` into `out` with `preset` and further flags.
fn synth(clean: &Path, out: &Path, preset: &str, flags: &[&str]) -> Output {
    let args = [
        "synth",
        "--clean",
        s(clean),
        "-o",
        s(out),
        "--preset",
        preset,
    ];
    brn(&[&args[..], flags].concat())
}

#[test]
fn synth_renders_rain_from_streak_layers_repeatably_and_names_a_missing_folder() {
    // Against the photos themselves and a second run: rendered rain changes the photo, the
    // same seed writes the same files, and a missing streak folder is an error naming it.
    let dir = temp_dir("rendered");
    let (photos, streaks) = photos_and_streaks(&dir);
    let run = |out: &Path, seed: &str| {
        synth(
            &photos,
            out,
            "rendered-heavy",
            &["--streaks", s(&streaks), "--seed", seed],
        )
    };
    let (a, b) = (dir.join("a"), dir.join("b"));
    assert!(run(&a, "3").status.success());
    assert!(run(&b, "3").status.success());
    for name in ["p0_00000.png", "p1_00001.png"] {
        let rainy = std::fs::read(a.join("rainy").join(name)).unwrap();
        assert_eq!(
            rainy,
            std::fs::read(b.join("rainy").join(name)).unwrap(),
            "{name}"
        );
        let (rainy, clean) = (
            image::open(a.join("rainy").join(name)).unwrap().to_rgb8(),
            image::open(a.join("clean").join(name)).unwrap().to_rgb8(),
        );
        assert_ne!(rainy, clean, "{name}: rain was added");
    }
    let missing = dir.join("no-streaks-here");
    let out = brn(&[
        "synth",
        "--clean",
        s(&photos),
        "-o",
        s(&dir.join("c")),
        "--preset",
        "rendered-light",
        "--streaks",
        s(&missing),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-streaks-here"), "{}", stderr(&out));
    // A sheet of a drawn and a rendered preset: a row of clean crops and one row each.
    let sheet = dir.join("sheet.png");
    let out = brn(&[
        "synth",
        "--clean",
        s(&photos),
        "--sheet",
        s(&sheet),
        "--rows",
        "light,rendered-light",
        "--streaks",
        s(&streaks),
        "--crop",
        "32",
        "--count",
        "2",
    ]);
    assert!(out.status.success());
    let (w, h) = image::image_dimensions(&sheet).unwrap();
    assert_eq!((w, h), (2 * (32 + 4) + 4, 3 * (32 + 4) + 4));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn synth_veil_zero_draws_the_presets_streaks_without_their_veil() {
    // Against the clean photos: heavy rain with `--veil 0` only adds light (its streaks are
    // screen-blended, which never darkens), while the same seed with its veil mixes in an
    // atmospheric light and so differs; a strength outside 0..1 is refused by name.
    let dir = temp_dir("veil");
    let (photos, _) = photos_and_streaks(&dir);
    let run =
        |out: &Path, veil: &str| synth(&photos, out, "heavy", &["--seed", "5", "--veil", veil]);
    let (dry, veiled) = (dir.join("dry"), dir.join("veiled"));
    let out = run(&dry, "0");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("veil and fog x0"), "{}", stderr(&out));
    assert!(run(&veiled, "1").status.success());
    for name in ["p0_00000.png", "p1_00001.png"] {
        let open = |dir: &Path, kind: &str| image::open(dir.join(kind).join(name)).unwrap();
        let (clean, rainy) = (open(&dry, "clean").to_rgb8(), open(&dry, "rainy").to_rgb8());
        assert_ne!(rainy, clean, "{name}: rain was added");
        let darker = clean
            .pixels()
            .zip(rainy.pixels())
            .flat_map(|(c, r)| (0..3).filter(move |&k| u16::from(r[k]) + 1 < u16::from(c[k])));
        assert_eq!(darker.count(), 0, "{name}: the dry rain darkened a pixel");
        assert_ne!(
            open(&veiled, "rainy").to_rgb8(),
            rainy,
            "{name}: the veil changed nothing"
        );
    }
    let out = run(&dir.join("bad"), "1.5");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("from 0 (no veil) to 1"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn derain_writes_a_before_and_after_sheet() {
    // Each input beside its output, scaled to the sheet's row height: two 64x48 photos at
    // height 24 give two rows of two 32x24 pictures.
    let dir = temp_dir("sheet");
    let (photos, _) = photos_and_streaks(&dir);
    let sheet = dir.join("out/sheet.png");
    let out = brn(&[
        "derain",
        s(&photos),
        "-o",
        s(&dir.join("out")),
        "--sheet",
        s(&sheet),
        "--sheet-height",
        "24",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        image::image_dimensions(&sheet).unwrap(),
        (2 * (32 + 4) + 4, 2 * (24 + 4) + 4)
    );
    let out = brn(&[
        "derain",
        s(&photos),
        "-o",
        s(&dir.join("out2")),
        "--sheet",
        s(&sheet),
        "--sheet-height",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--sheet-height"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
