//! Which ggml backend and devices the model runs on, and how many of its
//! layers were offloaded: reported by `/readyz`, the log at load and `xct
//! bench`, so that no number is mistaken for another machine's.
//!
//! With the `dynamic-backends` feature the backends are shared libraries
//! (`libggml-cpu-*.so`, `libggml-cuda.so`, `libggml-vulkan.so`) loaded at
//! start from one folder: `XCT_BACKENDS_DIR`, else the folder of the `xct`
//! binary when it holds a backend library, else where the build put them.
//! A static build has its backends compiled in. Of ggml's CPU variants the
//! AMX one is never used (`AMX_VARIANT` says why).

use llama_cpp_2::{LlamaBackendDeviceType, list_llama_ggml_backend_devices};
use serde::Serialize;

/// Environment variable naming the folder of loadable backends.
pub const BACKENDS_DIR_ENV: &str = "XCT_BACKENDS_DIR";

/// One device a backend offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// The backend's name: CPU, CUDA, Vulkan...
    pub backend: String,
    /// The device's name (e.g. CUDA0) and description (e.g. the GPU model).
    pub name: String,
    pub description: String,
    /// cpu, gpu, igpu, accel or unknown.
    pub kind: &'static str,
    pub memory_total_bytes: u64,
}

/// Where the model runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendInfo {
    /// "static" (backends compiled in) or "dynamic" (loaded at start).
    pub build: &'static str,
    /// The folder the backends were loaded from (dynamic builds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_from: Option<String>,
    pub devices: Vec<Device>,
    /// Layers as llama.cpp counts them for offloading (the repeating layers
    /// plus the output layer), and how many run on a GPU or accelerator.
    pub layers: u32,
    pub layers_offloaded: u32,
}

impl BackendInfo {
    /// What is known once a model of `model_layers` repeating layers is
    /// loaded with `n_gpu_layers` requested: llama.cpp offloads
    /// min(requested, layers + 1) (the output layer counts as one), and only
    /// to a non-CPU device.
    pub fn observe(model_layers: u32, n_gpu_layers: u32, loaded_from: Option<String>) -> Self {
        let devices: Vec<Device> = list_llama_ggml_backend_devices()
            .into_iter()
            .map(|d| Device {
                backend: d.backend,
                name: d.name,
                description: d.description,
                kind: match d.device_type {
                    LlamaBackendDeviceType::Cpu => "cpu",
                    LlamaBackendDeviceType::Gpu => "gpu",
                    LlamaBackendDeviceType::IntegratedGpu => "igpu",
                    LlamaBackendDeviceType::Accelerator => "accel",
                    LlamaBackendDeviceType::Unknown => "unknown",
                },
                memory_total_bytes: d.memory_total as u64,
            })
            .collect();
        let offload_target = devices.iter().any(|d| matches!(d.kind, "gpu" | "igpu" | "accel"));
        let layers = model_layers + 1;
        let layers_offloaded = if offload_target { n_gpu_layers.min(layers) } else { 0 };
        BackendInfo {
            build: if cfg!(feature = "dynamic-backends") { "dynamic" } else { "static" },
            loaded_from,
            devices,
            layers,
            layers_offloaded,
        }
    }

    /// One line, e.g. "CPU (AMD EPYC 7B13); 0 of 30 layers offloaded; static
    /// backends" or "CUDA0 (NVIDIA H200), CPU (...); 31 of 31 ...".
    pub fn summary(&self) -> String {
        let devices: Vec<String> = self
            .devices
            .iter()
            .filter(|d| d.kind != "accel" || self.layers_offloaded > 0)
            .map(|d| format!("{} ({})", d.name, d.description))
            .collect();
        let from = self.loaded_from.as_deref().map(|d| format!(" from {d}")).unwrap_or_default();
        format!(
            "{}; {} of {} layers offloaded; {} backends{from}",
            devices.join(", "),
            self.layers_offloaded,
            self.layers,
            self.build
        )
    }
}

/// Load the backend libraries (dynamic builds; before the backend starts).
/// Returns the folder they came from.
#[cfg(feature = "dynamic-backends")]
pub fn load_dynamic_backends() -> Option<String> {
    // A backend library (libggml-cpu-haswell.so, libggml-cuda.so...), not
    // libggml-base.so, which every dynamic build links.
    let has_backend = |dir: &std::path::Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("libggml-") && !name.starts_with("libggml-base")
            })
        })
    };
    let dir = std::env::var_os(BACKENDS_DIR_ENV)
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.parent().filter(|d| has_backend(d)).map(std::path::Path::to_path_buf)
        })
        .or_else(|| llama_cpp_sys_2::BACKENDS_DIR.map(std::path::PathBuf::from))?;
    llama_cpp_2::llama_backend::load_backends_from_path(&dir);
    avoid_amx_variant(&dir);
    Some(dir.display().to_string())
}

/// ggml's CPU variant for Sapphire Rapids and later Xeons, the only one with
/// AMX, dies with SIGILL at its first AMX matrix product (weights in Q4_0,
/// Q4_1, Q8_0, Q4_K, Q5_K, Q6_K or IQ4_XS on the CPU; seen with the test
/// model's Q4_1) when GCC 11 or 12 built it (Debian 12 has 12, the CUDA
/// image's Ubuntu 22.04 has 11; both compile it so): GCC drops the stores
/// that fill the tile configuration in `ggml_tile_config_init`
/// (`ggml-cpu/amx/mmq.cpp`, a local struct read only by the `ldtilecfg`
/// builtin), so `ldtilecfg` loads palette 1 with every tile empty and the
/// next `tileloadd` faults. Seen on this project's 2-core Xeon, which has
/// AMX: the disassembly shows the struct zeroed and only its palette byte
/// set. llama.cpp PR 26954 (open) moves the configuration to static data.
/// Until the pinned llama.cpp has that fix, the variant is replaced by
/// `AMX_FALLBACK`, which ggml builds with the same features less AMX, so
/// every CPU that picks the one can run the other.
#[cfg(feature = "dynamic-backends")]
const AMX_VARIANT: &str = "libggml-cpu-sapphirerapids.so";
/// The AMX variant's features less AMX (AVX-512 with VBMI, VNNI and BF16).
#[cfg(feature = "dynamic-backends")]
const AMX_FALLBACK: &str = "libggml-cpu-zen4.so";

/// If ggml chose the AMX CPU variant, unload it and load [`AMX_FALLBACK`]
/// from the same folder (before any model or device is in use).
#[cfg(feature = "dynamic-backends")]
fn avoid_amx_variant(dir: &std::path::Path) {
    use llama_cpp_sys_2 as sys;
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: a NUL-terminated name that outlives the call; a non-NULL
    // result is a registered backend.
    let reg = unsafe { sys::ggml_backend_reg_by_name(c"CPU".as_ptr()) };
    if reg.is_null() || !unsafe { has_feature(reg, b"AMX_INT8") } {
        return;
    }
    let fallback = dir.join(AMX_FALLBACK);
    if !fallback.is_file() {
        tracing::warn!(
            "the CPU backend is ggml's AMX variant ({AMX_VARIANT}), which can die with SIGILL, and {} is missing",
            fallback.display()
        );
        return;
    }
    let Ok(path) = std::ffi::CString::new(fallback.as_os_str().as_bytes()) else { return };
    // SAFETY: nothing uses the CPU backend yet (no model or device is open),
    // so unloading it leaves no dangling reference; the path is
    // NUL-terminated and outlives the call.
    let loaded = unsafe {
        sys::ggml_backend_unload(reg);
        sys::ggml_backend_load(path.as_ptr())
    };
    if loaded.is_null() {
        tracing::error!("could not load {} in place of the AMX CPU variant", fallback.display());
    } else {
        tracing::info!("CPU backend: {AMX_FALLBACK} in place of {AMX_VARIANT} (its AMX code dies with SIGILL)");
    }
}

/// Whether a backend reports `feature` (e.g. AMX_INT8) among its features.
///
/// # Safety
/// `reg` is a registered backend.
#[cfg(feature = "dynamic-backends")]
unsafe fn has_feature(reg: llama_cpp_sys_2::ggml_backend_reg_t, feature: &[u8]) -> bool {
    use llama_cpp_sys_2 as sys;
    // SAFETY: `reg` is registered; the proc address is NULL or the function
    // `ggml_backend_get_features_t` describes, whose array ends with a NULL
    // name.
    unsafe {
        let get = sys::ggml_backend_reg_get_proc_address(reg, c"ggml_backend_get_features".as_ptr());
        let get: sys::ggml_backend_get_features_t = std::mem::transmute(get);
        let Some(get) = get else { return false };
        let mut f = get(reg);
        while !f.is_null() && !(*f).name.is_null() {
            if std::ffi::CStr::from_ptr((*f).name).to_bytes() == feature {
                return true;
            }
            f = f.add(1);
        }
        false
    }
}

/// Static builds have their backends compiled in.
#[cfg(not(feature = "dynamic-backends"))]
pub fn load_dynamic_backends() -> Option<String> {
    None
}
