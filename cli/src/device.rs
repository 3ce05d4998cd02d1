//! Where a command runs: parsing `--device`, starting the platform's GPU through wgpu or
//! checking that CUDA can start, persistent kernel caches for GPU runs, and running a command
//! on the backend the device needs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use model::BrnBackend;

/// What `--device` names: the CPU, the platform's GPU, either, or CUDA devices by index.
#[derive(Debug, PartialEq)]
pub enum Devices {
    /// The CPU (burn-flex).
    Cpu,
    /// The platform's GPU through wgpu (Vulkan, Metal or DX12) with the page's WGSL kernels.
    Gpu,
    /// The GPU when one is usable, else the CPU (saying which).
    Auto,
    /// CUDA devices by index (burn-cuda); several train data-parallel.
    Cuda(Vec<usize>),
}

/// Parse `cpu`, `gpu`, `auto`, `cuda` (device 0), `cuda:N`, or a comma-separated list of
/// CUDA devices (`cuda:0,cuda:1`) for data-parallel training.
pub fn parse_devices(text: &str) -> Result<Devices> {
    let help = "use cpu, gpu, auto, cuda:N, or a list such as cuda:0,cuda:1";
    match text {
        "cpu" => return Ok(Devices::Cpu),
        "gpu" => return Ok(Devices::Gpu),
        "auto" => return Ok(Devices::Auto),
        _ => {}
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
    /// (see [`use_kernel_cache`]); `None` takes the user's [`default_kernel_cache`].
    fn kernel_cache(&self) -> Option<PathBuf> {
        None
    }

    /// On a wgpu GPU: the tile side its limits allow (the page's planner), for jobs that tile.
    fn use_gpu_tile(&mut self, _tile: usize) {}

    /// On the CPU: what computes the convolutions there ([`cpu_products`]), for jobs that
    /// record it (a training run's log).
    fn use_cpu(&mut self, _products: &str) {}

    /// Run on backend `B` with these devices (one, unless [`Job::SEVERAL_DEVICES`]).
    fn run<B: BrnBackend>(self, devices: &[B::Device]) -> Result<ExitCode>;
}

/// Run `job` on the backend and devices that `device` (a `--device` value) names.
pub fn run_on<J: Job>(device: &str, job: J) -> Result<ExitCode> {
    let devices = parse_devices(device)?;
    if !J::SEVERAL_DEVICES && matches!(&devices, Devices::Cuda(list) if list.len() > 1) {
        bail!("'{device}': this command runs on one device; several devices are for training");
    }
    match devices {
        Devices::Cpu => cpu(job),
        Devices::Gpu => gpu(job, false),
        Devices::Auto => gpu(job, true),
        Devices::Cuda(indices) => cuda(indices, job),
    }
}

/// Run `job` on the CPU (burn-flex with our kernels), saying first what computes there.
fn cpu<J: Job>(mut job: J) -> Result<ExitCode> {
    let products = cpu_products();
    eprintln!("{products}");
    job.use_cpu(&products);
    job.run::<burn_flex::Flex>(&[Default::default()])
}

/// The CPU, its threads and the convolutions' products at the precision asked, in one line:
/// e.g. "CPU: AMD EPYC, 2 threads; convolutions: AVX-512 f32" (and `BRN_SIMD`'s cap, if one
/// narrows the kernels' instructions).
pub fn cpu_products() -> String {
    let cap = match model::backend::Simd::cap() {
        model::backend::Simd::Avx512 => String::new(),
        cap => format!(" (capped by BRN_SIMD={})", cap.name()),
    };
    format!(
        "CPU: {}, {} threads; convolutions: {}{cap}",
        cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        rayon::current_num_threads(),
        model::backend::products_in_use()
    )
}

/// The CPU's model name (Linux: `/proc/cpuinfo`), if the system says.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// The GPU wgpu started: what it is and the tile side its limits allow.
pub struct GpuInfo {
    /// The adapter's name and graphics API.
    pub name: String,
    /// Tile side from its buffer limits ([`model::tiling::tile_for_gpu_limits`]).
    pub tile: usize,
}

/// Start the platform's GPU through wgpu (Vulkan on Linux, Metal on macOS, DX12 on Windows)
/// with the page's WGSL kernels, or say in one sentence why there is none.
#[cfg(feature = "gpu")]
pub fn start_gpu() -> Result<GpuInfo, String> {
    use burn_wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions, WgpuDevice};
    // wgpu panics when it finds no adapter; catch that (quietly) and say it plainly.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let setup = std::panic::catch_unwind(|| {
        init_setup::<AutoGraphicsApi>(&WgpuDevice::DefaultDevice, RuntimeOptions::default())
    });
    std::panic::set_hook(hook);
    let setup = setup.map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!(
            "wgpu found no usable GPU adapter ({}); install the GPU's Vulkan driver (Debian: mesa-vulkan-drivers for most GPUs, or the vendor's), Metal on macOS, DX12 on Windows",
            what.trim_end_matches('.')
        )
    })?;
    let limits = setup.device.limits();
    let info = setup.adapter.get_info();
    Ok(GpuInfo {
        name: format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type),
        tile: model::tiling::tile_for_gpu_limits(
            limits.max_storage_buffer_binding_size as u64,
            limits.max_buffer_size,
        ),
    })
}

#[cfg(feature = "gpu")]
fn gpu<J: Job>(mut job: J, fall_back: bool) -> Result<ExitCode> {
    match start_gpu() {
        Ok(gpu) => {
            eprintln!("using the GPU: {}; tiles up to {} px", gpu.name, gpu.tile);
            job.use_gpu_tile(gpu.tile);
            job.run::<burn_wgpu::Wgpu>(&[burn_wgpu::WgpuDevice::DefaultDevice])
        }
        Err(why) if fall_back => {
            eprintln!("using the CPU: {why}");
            cpu(job)
        }
        Err(why) => bail!("--device gpu: {why}; or run on the CPU with --device cpu"),
    }
}

#[cfg(not(feature = "gpu"))]
fn gpu<J: Job>(job: J, fall_back: bool) -> Result<ExitCode> {
    if fall_back {
        eprintln!("using the CPU: this build has no GPU support");
        return cpu(job);
    }
    bail!("this build has no GPU support (the `gpu` feature, on by default); run with --device cpu")
}

#[cfg(feature = "cuda")]
fn cuda<J: Job>(indices: Vec<usize>, job: J) -> Result<ExitCode> {
    match job.kernel_cache() {
        Some(dir) => use_kernel_cache(&dir)?,
        None => {
            if let Some(dir) = default_kernel_cache() {
                if let Err(why) = use_kernel_cache(&dir) {
                    eprintln!("warning: {why:#}; kernels are compiled anew in every run");
                }
            }
        }
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
    bail!("this build has no CUDA support; rebuild with `cargo build --release -p brn --features cuda`")
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

/// The kernel cache of commands that name none (`derain`, `eval`, `bench` without `--cache`):
/// `$BRN_KERNEL_CACHE`, else `brn/kernels` in the user's cache folder (`$XDG_CACHE_HOME`, `~/.cache`, or
/// `%LOCALAPPDATA%`), so that every later run on this GPU skips compilation and autotuning
/// (without it, each process compiled its kernels anew and the autotune results went to a
/// `target/` folder in the working folder). `None` where no such folder is known.
pub fn default_kernel_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BRN_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .or_else(|| std::env::var_os("LOCALAPPDATA").map(PathBuf::from))?;
    Some(base.join("brn").join("kernels"))
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

/// `--mixed-precision`: asks the CPU kernels for bfloat16 products (see
/// `model::backend::set_mixed_precision`), and warns when this CPU has none (neither AMX nor
/// AVX512_BF16).
pub fn use_mixed_precision(asked: bool) {
    if asked && !model::backend::set_mixed_precision(true) {
        let f32_products = model::backend::Precision::F32.products();
        eprintln!(
            "warning: --mixed-precision cannot apply: this CPU has no bfloat16 products (neither AMX, as on Intel Xeon 4th generation on, nor AVX512_BF16, as on AMD Zen 4 on); the convolutions stay f32 ({f32_products})"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_devices, Devices};

    #[test]
    fn device_lists_parse_and_bad_ones_are_named() {
        assert_eq!(parse_devices("cpu").unwrap(), Devices::Cpu);
        assert_eq!(parse_devices("gpu").unwrap(), Devices::Gpu);
        assert_eq!(parse_devices("auto").unwrap(), Devices::Auto);
        assert_eq!(parse_devices("cuda").unwrap(), Devices::Cuda(vec![0]));
        assert_eq!(parse_devices("cuda:3").unwrap(), Devices::Cuda(vec![3]));
        assert_eq!(
            parse_devices("cuda:0, cuda:1").unwrap(),
            Devices::Cuda(vec![0, 1])
        );
        for (bad, needle) in [
            ("tpu", "unknown device 'tpu'"),
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
