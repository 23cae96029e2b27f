use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = xct::cli::Cli::parse();
    // Before the runtime: the trace exporter's HTTP client is a blocking one.
    let _telemetry = xct::cli::init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("xct: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(xct::cli::run(cli));
    // Steps still in flight are abandoned here, as before; the traces of
    // finished ones are flushed when `_telemetry` drops.
    drop(runtime);
    code
}
