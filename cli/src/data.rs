//! Data: image folders, paired test sets (which rainy file goes with which clean one), and
//! the training pipeline's images (patches made rainy on the fly) and validation set.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::RgbImage;
use model::derain::{to_planar, to_tensor};
use model::io::image_files;
use model::Brn;
use rand::rngs::StdRng;
use rand::Rng;

use crate::config::TrainConfig;
use crate::degrade::Degradations;
use crate::eval;
use crate::rain::RainMix;

/// One rainy image and its clean ground truth.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The pair's name (the rainy file's stem).
    pub name: String,
    /// The rainy image file.
    pub rainy: PathBuf,
    /// Its clean ground truth.
    pub clean: PathBuf,
}

#[derive(Clone, Copy)]
enum Layout {
    Rain100,
    Rain1400,
    Generic,
}

/// Pairs of a test set in one of the layouts we know:
/// - Rain100L/H: `DIR/rainy/rain-N.png` with `DIR/norain-N.png`;
/// - Rain1400/Rain12600: `DIR/rainy_image/I_J.jpg` (J-th rain of scene I) with `DIR/ground_truth/I.jpg`;
/// - generic: `DIR/rainy/NAME` with `DIR/clean/NAME` (same file names).
pub fn pairs(dir: &Path) -> Result<Vec<Pair>> {
    let (rainy_dir, layout) = if dir.join("rainy_image").is_dir() {
        (dir.join("rainy_image"), Layout::Rain1400)
    } else if dir.join("rainy").is_dir() {
        let layout = if dir.join("clean").is_dir() {
            Layout::Generic
        } else {
            Layout::Rain100
        };
        (dir.join("rainy"), layout)
    } else {
        bail!(
            "{} has neither 'rainy/' nor 'rainy_image/'; expected DIR/rainy/rain-N.png + DIR/norain-N.png (Rain100L/H), DIR/rainy_image/I_J.jpg + DIR/ground_truth/I.jpg (Rain1400/12600) or DIR/rainy/NAME + DIR/clean/NAME",
            dir.display()
        );
    };
    let mut out = Vec::new();
    for rainy in image_files(&rainy_dir)? {
        let name = rainy
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .to_string();
        let clean = match layout {
            Layout::Generic => dir.join("clean").join(&name),
            Layout::Rain100 => match name.strip_prefix("rain-") {
                Some(rest) => dir.join(format!("norain-{rest}")),
                None => bail!(
                    "{}: no clean/ folder and the name does not follow rain-N",
                    rainy.display()
                ),
            },
            Layout::Rain1400 => {
                let ext = rainy.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
                let stem = rainy.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                match stem.rsplit_once('_') {
                    Some((scene, _)) => dir.join("ground_truth").join(format!("{scene}.{ext}")),
                    None => bail!(
                        "{}: a rainy_image/ file must be named SCENE_N (Rain1400 layout)",
                        rainy.display()
                    ),
                }
            }
        };
        if !clean.is_file() {
            bail!(
                "{} has no ground truth: {} is missing",
                rainy.display(),
                clean.display()
            );
        }
        out.push(Pair { name, rainy, clean });
    }
    if out.is_empty() {
        bail!("{} holds no images", rainy_dir.display());
    }
    Ok(out)
}

/// Training images held in memory as 8-bit RGB.
pub struct Sources {
    clean: Vec<RgbImage>,
    paired: Vec<(RgbImage, RgbImage)>,
    rain: RainMix,
    degrade: Option<Degradations>,
    smooth: f64,
}

fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let picture = model::decode(&bytes).with_context(|| path.display().to_string())?;
    let pixels = model::image::rgb8_from_planar(&picture.rgb);
    Ok(
        RgbImage::from_raw(picture.width as u32, picture.height as u32, pixels)
            .expect("sizes match"),
    )
}

impl Sources {
    /// Load every image (decoded in parallel, kept in folder order), skipping unreadable ones
    /// (and ones smaller than a patch) with a warning.
    pub fn load(config: &TrainConfig) -> Result<Self> {
        use rayon::prelude::*;
        let big_enough = |img: &RgbImage| {
            img.width() as usize >= config.patch && img.height() as usize >= config.patch
        };
        let mut paths = Vec::new();
        for dir in &config.clean {
            paths.extend(image_files(dir)?);
        }
        let loaded: Vec<_> = paths.par_iter().map(|path| load_rgb(path)).collect();
        let mut clean = Vec::new();
        for (path, result) in paths.iter().zip(loaded) {
            match result {
                Ok(img) if big_enough(&img) => clean.push(img),
                Ok(_) => eprintln!(
                    "warning: skipping {}: smaller than the patch",
                    path.display()
                ),
                Err(e) => eprintln!("warning: skipping {}: {e:#}", path.display()),
            }
        }
        let mut found = Vec::new();
        for dir in &config.paired {
            found.extend(pairs(dir)?);
        }
        let loaded: Vec<_> = found
            .par_iter()
            .map(|pair| (load_rgb(&pair.rainy), load_rgb(&pair.clean)))
            .collect();
        let mut paired = Vec::new();
        for (pair, result) in found.iter().zip(loaded) {
            match result {
                (Ok(r), Ok(c)) if r.dimensions() == c.dimensions() && big_enough(&r) => {
                    paired.push((r, c))
                }
                (Ok(_), Ok(_)) => eprintln!(
                    "warning: skipping {}: size mismatch or too small",
                    pair.name
                ),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("warning: skipping {}: {e:#}", pair.name)
                }
            }
        }
        if clean.is_empty() && paired.is_empty() {
            bail!("no usable training images in the configured folders");
        }
        Ok(Self {
            clean,
            paired,
            rain: config.rain_mix()?,
            degrade: config.degrade.clone(),
            smooth: config.smooth,
        })
    }

    /// One (rainy, clean) patch, planar `[3, P, P]`, from `rng` alone.
    fn sample(&self, patch: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
        let total = self.clean.len() + self.paired.len();
        let pick = rng.random_range(0..total);
        let (rainy_src, clean_src) = if pick < self.clean.len() {
            (None, &self.clean[pick])
        } else {
            let (r, c) = &self.paired[pick - self.clean.len()];
            (Some(r), c)
        };
        let x0 = rng.random_range(0..=clean_src.width() as usize - patch);
        let y0 = rng.random_range(0..=clean_src.height() as usize - patch);
        let flip = rng.random_bool(0.5);
        let crop = |img: &RgbImage| {
            let n = patch * patch;
            let mut out = vec![0f32; 3 * n];
            for y in 0..patch {
                for x in 0..patch {
                    let sx = if flip { x0 + patch - 1 - x } else { x0 + x };
                    let p = img.get_pixel(sx as u32, (y0 + y) as u32);
                    for c in 0..3 {
                        out[c * n + y * patch + x] = p[c] as f32 / 255.0;
                    }
                }
            }
            out
        };
        let mut clean = crop(clean_src);
        // Drawn only when asked for, so that runs without smooth patches keep their batches.
        if rainy_src.is_none() && self.smooth > 0.0 && rng.random_bool(self.smooth) {
            clean = crate::smooth::smooth_patch(&clean, patch, rng);
        }
        let mut rainy = match rainy_src {
            Some(r) => crop(r),
            None => {
                let k = rng.random_range(0..self.rain.len());
                self.rain.add(k, &clean, patch, patch, rng).0
            }
        };
        if let Some(degrade) = &self.degrade {
            degrade.apply(&mut rainy, patch, patch, rng);
        }
        (rainy, clean)
    }

    /// Batch `step` of a run with `seed`: a pure function of (seed, step), so resumed runs see
    /// exactly the batches an uninterrupted run would. Patches are made in parallel.
    pub fn batch(
        &self,
        seed: u64,
        step: usize,
        batch_size: usize,
        patch: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        use rayon::prelude::*;
        let items: Vec<(Vec<f32>, Vec<f32>)> = (0..batch_size)
            .into_par_iter()
            .map(|i| {
                self.sample(
                    patch,
                    &mut crate::synth::rng_for(seed ^ 0x5eed, (step * batch_size + i) as u64),
                )
            })
            .collect();
        let mut rainy = Vec::with_capacity(batch_size * 3 * patch * patch);
        let mut clean = Vec::with_capacity(batch_size * 3 * patch * patch);
        for (r, c) in items {
            rainy.extend(r);
            clean.extend(c);
        }
        (rainy, clean)
    }
}

/// A fixed validation set: centre crops of clean photos with seeded rain of the config's
/// presets in turn (those that rain: validation scores rain removal, so `none` is left out).
pub struct Validation {
    pairs: Vec<(Vec<f32>, RgbImage)>,
}

impl Validation {
    /// Centre crops of the config's validation folders, each with the next rain preset of
    /// the training sources' mix (its streak layers shared, not loaded again).
    pub fn load(config: &TrainConfig, sources: &Sources) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut index = 0u64;
        let mut rain = sources.rain.raining();
        if rain.is_empty() {
            rain = RainMix::new(&["light", "heavy"], &config.streak_folder())?;
        }
        for dir in &config.validation {
            for path in image_files(dir)? {
                let img = match load_rgb(&path) {
                    Ok(img) => img,
                    Err(e) => {
                        eprintln!(
                            "warning: skipping validation image {}: {e:#}",
                            path.display()
                        );
                        continue;
                    }
                };
                let side = config.validation_crop;
                let (w, h) = (img.width().min(side as u32), img.height().min(side as u32));
                let (x0, y0) = ((img.width() - w) / 2, (img.height() - h) / 2);
                let crop = image::imageops::crop_imm(&img, x0, y0, w, h).to_image();
                let planar = model::image::planar_from_rgb8(crop.as_raw());
                // The presets in turn (light, heavy, light, ... for the default pair).
                let (rainy, _) = rain.add(
                    index as usize % rain.len(),
                    &planar,
                    w as usize,
                    h as usize,
                    &mut crate::synth::rng_for(0xfa11, index),
                );
                // The rainy input is 8-bit, as a saved photo would be.
                let rainy = model::image::planar_from_rgb8(&model::image::rgb8_from_planar(&rainy));
                pairs.push((rainy, crop));
                index += 1;
            }
        }
        Ok(Self { pairs })
    }

    /// Whether the config named no validation images.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Mean Y-channel PSNR / SSIM (the paper's metric) of `net` with its configured T.
    pub fn score<B: model::BrnBackend>(&self, net: &Brn<B>, device: &B::Device) -> (f64, f64) {
        let (mut psnr, mut ssim) = (0.0, 0.0);
        for (rainy, clean) in &self.pairs {
            let (w, h) = (clean.width() as usize, clean.height() as usize);
            let out = to_planar(
                net.run(
                    to_tensor::<B>(rainy.clone(), w, h, device),
                    net.config.stages,
                    false,
                )
                .background,
            );
            let (p, s) = eval::score(&out, clean.as_raw(), w, h);
            psnr += p;
            ssim += s;
        }
        let n = self.pairs.len().max(1) as f64;
        (psnr / n, ssim / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn the_three_paired_layouts_are_recognised() {
        let root = std::env::temp_dir().join(format!("brn-layouts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Rain100L/H.
        let r100 = root.join("rain100");
        touch(&r100.join("rainy/rain-1.png"));
        touch(&r100.join("norain-1.png"));
        let p = pairs(&r100).unwrap();
        assert_eq!(p[0].clean, r100.join("norain-1.png"));
        // Rain1400: fourteen rains of scene 7 share ground_truth/7.jpg.
        let r1400 = root.join("rain1400");
        touch(&r1400.join("rainy_image/7_1.jpg"));
        touch(&r1400.join("rainy_image/7_14.jpg"));
        touch(&r1400.join("ground_truth/7.jpg"));
        let p = pairs(&r1400).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p
            .iter()
            .all(|p| p.clean == r1400.join("ground_truth/7.jpg")));
        // Generic rainy/ + clean/.
        let generic = root.join("generic");
        touch(&generic.join("rainy/a.png"));
        touch(&generic.join("clean/a.png"));
        assert_eq!(
            pairs(&generic).unwrap()[0].clean,
            generic.join("clean/a.png")
        );
        // A missing ground truth is named.
        touch(&r1400.join("rainy_image/8_1.jpg"));
        let err = pairs(&r1400).unwrap_err().to_string();
        assert!(err.contains("8.jpg"), "{err}");
        // Neither layout.
        assert!(pairs(&root).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Two tiny textured photos and two tiny streak layers in `root`, and a config over them.
    fn rendered_setup(root: &Path, extra: serde_json::Value) -> TrainConfig {
        let (photos, streaks) = (root.join("photos"), root.join("streaks"));
        std::fs::create_dir_all(&photos).unwrap();
        std::fs::create_dir_all(&streaks).unwrap();
        for k in 0..2u32 {
            image::RgbImage::from_fn(40, 36, |x, y| {
                image::Rgb([(x * 6 + k * 40) as u8, (y * 7) as u8, ((x ^ y) * 8) as u8])
            })
            .save(photos.join(format!("p{k}.png")))
            .unwrap();
            image::GrayImage::from_fn(48, 32, |x, y| {
                image::Luma([if (x + k) % 6 == 0 && y % 9 < 6 {
                    220
                } else {
                    0
                }])
            })
            .save(streaks.join(format!("{k}-4.png")))
            .unwrap();
        }
        let mut config = serde_json::json!({
            "model": "brn",
            "patch": 24,
            "clean": [photos],
            "streaks": streaks,
            "presets": ["rendered-light", "rendered-heavy", "light"],
        });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        serde_json::from_value(config).unwrap()
    }

    #[test]
    fn batches_with_rendered_rain_smooth_patches_and_degradations_repeat() {
        // A batch is a pure function of (seed, step) with every new input option on; another
        // step draws other patches.
        let root = std::env::temp_dir().join(format!("brn-rendered-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = rendered_setup(
            &root,
            serde_json::json!({
                "smooth": 0.5,
                "degrade": {"probability": 0.5, "noise": [0.0, 0.02], "jpeg": [60, 95]},
            }),
        );
        config.validate().unwrap();
        let sources = Sources::load(&config).unwrap();
        let a = sources.batch(3, 7, 4, 24);
        assert_eq!(a, sources.batch(3, 7, 4, 24));
        assert_ne!(a, sources.batch(3, 8, 4, 24));
        assert!(a.0.iter().chain(&a.1).all(|v| (0.0..=1.0).contains(v)));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn smooth_patches_and_degradations_touch_the_input_they_should() {
        // Rain-free patches, all made smooth: the clean targets lose their texture. With
        // degradations on every input (and no rain), the input differs from its clean target.
        let root = std::env::temp_dir().join(format!("brn-smooth-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let contrast = |img: &[f32]| {
            (1..img.len())
                .map(|i| (img[i] - img[i - 1]).abs())
                .sum::<f32>()
                / img.len() as f32
        };
        let plain = Sources::load(&rendered_setup(
            &root,
            serde_json::json!({"presets": ["none"]}),
        ))
        .unwrap()
        .batch(1, 0, 4, 24);
        assert_eq!(
            plain.0, plain.1,
            "`none` without degradations: the input is the target"
        );
        let smooth = rendered_setup(
            &root,
            serde_json::json!({"presets": ["none"], "smooth": 1.0}),
        );
        let smooth = Sources::load(&smooth).unwrap().batch(1, 0, 4, 24);
        assert!(contrast(&smooth.1) < contrast(&plain.1) / 4.0);
        let degraded = rendered_setup(
            &root,
            serde_json::json!({"presets": ["none"], "degrade": {"probability": 1.0, "noise": [0.02, 0.02]}}),
        );
        let degraded = Sources::load(&degraded).unwrap().batch(1, 0, 4, 24);
        assert_eq!(degraded.1, plain.1, "the clean target stays clean");
        assert_ne!(degraded.0, degraded.1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_streak_folder_is_named_when_a_rendered_preset_needs_it() {
        let root = std::env::temp_dir().join(format!("brn-streakless-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut config = rendered_setup(&root, serde_json::json!({}));
        config.streaks = Some(root.join("no-such-streaks"));
        let err = format!("{:#}", Sources::load(&config).err().unwrap());
        assert!(err.contains("no-such-streaks"), "{err}");
        // Drawn presets alone never read it.
        config.presets = vec!["light".into(), "none".into()];
        assert!(Sources::load(&config).is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
