//! Where a command runs: parsing `--device`, checking that CUDA can start, persistent kernel
//! caches for GPU runs, and running a command on the backend the device needs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use burn::tensor::backend::Backend;

/// What `--device` names: the CPU, or one or more CUDA devices by index.
#[derive(Debug, PartialEq)]
pub enum Devices {
    /// The CPU (burn-flex).
    Cpu,
    /// CUDA devices by index (burn-cuda); several train data-parallel.
    Cuda(Vec<usize>),
}

/// Parse `cpu`, `cuda` (device 0), `cuda:N`, or a comma-separated list of CUDA devices
/// (`cuda:0,cuda:1`) for data-parallel training.
pub fn parse_devices(text: &str) -> Result<Devices> {
    let help = "use cpu, cuda:N, or a list such as cuda:0,cuda:1";
    if text == "cpu" {
        return Ok(Devices::Cpu);
    }
    let mut indices = Vec::new();
    for part in text.split(',').map(str::trim) {
        let index = match part.strip_prefix("cuda") {
            Some("") => 0,
            Some(rest) => rest
                .strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("bad device '{part}': {help}"))?,
            None if part == "cpu" => bail!("'{text}': the CPU trains alone; {help}"),
            None => bail!("unknown device '{part}': {help}"),
        };
        if indices.contains(&index) {
            bail!("'{text}' names cuda:{index} twice");
        }
        indices.push(index);
    }
    Ok(Devices::Cuda(indices))
}

/// A command that can run on any backend, given its devices.
pub trait Job: Sized {
    /// Whether the job can use several devices at once (data-parallel training).
    const SEVERAL_DEVICES: bool = false;

    /// Where GPU backends keep their compiled kernels and autotune results between runs
    /// (see [`use_kernel_cache`]); `None` keeps the backends' defaults.
    fn kernel_cache(&self) -> Option<PathBuf> {
        None
    }

    /// Run on backend `B` with these devices (one, unless [`Job::SEVERAL_DEVICES`]).
    fn run<B: Backend>(self, devices: &[B::Device]) -> Result<ExitCode>;
}

/// Run `job` on the backend and devices that `device` (a `--device` value) names.
pub fn run_on<J: Job>(device: &str, job: J) -> Result<ExitCode> {
    let devices = parse_devices(device)?;
    if !J::SEVERAL_DEVICES && matches!(&devices, Devices::Cuda(list) if list.len() > 1) {
        bail!("'{device}': this command runs on one device; several devices are for training");
    }
    match devices {
        Devices::Cpu => job.run::<burn_flex::Flex>(&[Default::default()]),
        Devices::Cuda(indices) => cuda(indices, job),
    }
}

#[cfg(feature = "cuda")]
fn cuda<J: Job>(indices: Vec<usize>, job: J) -> Result<ExitCode> {
    if let Some(dir) = job.kernel_cache() {
        use_kernel_cache(&dir)?;
    }
    check_cuda(&indices)?;
    let devices: Vec<_> = indices
        .into_iter()
        .map(burn_cuda::CudaDevice::new)
        .collect();
    job.run::<burn_cuda::Cuda>(&devices)
}

#[cfg(not(feature = "cuda"))]
fn cuda<J: Job>(_indices: Vec<usize>, _job: J) -> Result<ExitCode> {
    bail!("this build has no CUDA support; rebuild with `cargo build --release -p trainer --features cuda`")
}

/// Fail with a clear message, instead of a panic deep inside burn-cuda, when the driver or
/// NVRTC cannot be loaded or a device index does not exist.
#[cfg(feature = "cuda")]
fn check_cuda(indices: &[usize]) -> Result<()> {
    use cudarc::driver::result;
    // SAFETY: these only dlopen the libraries, as burn-cuda does on first use.
    let (driver, nvrtc) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    if !driver {
        bail!("CUDA is not available: the NVIDIA driver library (libcuda.so) was not found; install the driver, or add its folder to LD_LIBRARY_PATH");
    }
    if !nvrtc {
        bail!("CUDA's runtime compiler (libnvrtc.so) was not found; install the CUDA toolkit, or add its lib64 folder to LD_LIBRARY_PATH");
    }
    result::init().map_err(|e| anyhow::anyhow!("the CUDA driver did not start: {e:?}"))?;
    let count = result::device::get_count()
        .map_err(|e| anyhow::anyhow!("cannot count CUDA devices: {e:?}"))? as usize;
    if let Some(missing) = indices.iter().find(|&&i| i >= count) {
        bail!("cuda:{missing} does not exist: this machine has {count} CUDA device(s)");
    }
    Ok(())
}

/// The folders of a kernel cache: cubecl's compiled kernels (PTX), its autotune results, and
/// the CUDA driver's JIT cache (PTX to machine code).
pub struct KernelCache {
    /// cubecl's compilation cache (`[compilation] cache` in `cubecl.toml`).
    pub kernels: PathBuf,
    /// cubecl's autotune cache (`[autotune] cache`).
    pub autotune: PathBuf,
    /// The driver's JIT cache (`CUDA_CACHE_PATH`).
    pub driver: PathBuf,
}

impl KernelCache {
    /// The layout under `dir`.
    pub fn under(dir: &Path) -> Self {
        Self {
            kernels: dir.join("kernels"),
            autotune: dir.join("autotune"),
            driver: dir.join("cuda-jit"),
        }
    }
}

/// Keep compiled kernels and autotune results in `dir`, so that a later run (on this machine,
/// or on another with the same GPU model that got a copy of `dir`) skips the minutes of
/// compilation and autotuning that burn-cuda spends on its first steps. Must be called before
/// the first GPU operation. A `cubecl.toml` in the working folder still sets everything else.
pub fn use_kernel_cache(dir: &Path) -> Result<()> {
    let cache = KernelCache::under(dir);
    for folder in [&cache.kernels, &cache.autotune, &cache.driver] {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the kernel cache {}", folder.display()))?;
    }
    // The driver reads these when CUDA starts (`cuInit`), which has not happened yet.
    std::env::set_var("CUDA_CACHE_PATH", &cache.driver);
    if std::env::var_os("CUDA_CACHE_MAXSIZE").is_none() {
        // The driver's default (256 MiB) can evict BRN's kernels; 4 GiB is its maximum.
        std::env::set_var("CUDA_CACHE_MAXSIZE", "4294967296");
    }
    #[cfg(feature = "cuda")]
    {
        use cubecl_runtime::config::cache::CacheConfig;
        use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.compilation.cache = Some(CacheConfig::File(cache.kernels));
        config.autotune.cache = CacheConfig::File(cache.autotune);
        // Panics only if the configuration was already read: nothing has touched the GPU yet.
        CubeClRuntimeConfig::set(config);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_devices, Devices};

    #[test]
    fn device_lists_parse_and_bad_ones_are_named() {
        assert_eq!(parse_devices("cpu").unwrap(), Devices::Cpu);
        assert_eq!(parse_devices("cuda").unwrap(), Devices::Cuda(vec![0]));
        assert_eq!(parse_devices("cuda:3").unwrap(), Devices::Cuda(vec![3]));
        assert_eq!(
            parse_devices("cuda:0, cuda:1").unwrap(),
            Devices::Cuda(vec![0, 1])
        );
        for (bad, needle) in [
            ("gpu", "unknown device 'gpu'"),
            ("cuda:x", "bad device 'cuda:x'"),
            ("cuda0", "bad device 'cuda0'"),
            ("cuda:1,cuda:1", "twice"),
            ("cpu,cuda:0", "the CPU trains alone"),
        ] {
            let err = parse_devices(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
