use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = xct::cli::Cli::parse();
    xct::cli::init_logging(&cli);
    xct::cli::run(cli).await
}
