//! Run the test API server as a process, for scripts and kubectl:
//! `xct-testapi [--listen 127.0.0.1:0] [--kubeconfig PATH] [--rbac]`. Prints
//! the URL, serves until killed. With `--rbac`, RBAC is enforced from the
//! Roles and bindings applied to it. The request log is at `GET /_testapi/requests`.

use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut rbac = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--kubeconfig" => kubeconfig = args.next().map(PathBuf::from),
            "--rbac" => rbac = true,
            other => {
                eprintln!("unknown argument {other}; usage: xct-testapi [--listen ADDR] [--kubeconfig PATH] [--rbac]");
                std::process::exit(2);
            }
        }
    }
    let server = match xct_testapi::TestApiServer::start_on(&listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    if rbac {
        server.enforce_rbac();
    }
    if let Some(path) = kubeconfig
        && let Err(e) = server.write_kubeconfig(&path, None)
    {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("{}", server.url());
    let _ = tokio::signal::ctrl_c().await;
}
