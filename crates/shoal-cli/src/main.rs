//! `shoal`: one binary to run a node or a whole dev cluster, and to use one.

mod bench;
mod cli;
mod commands;
mod logging;

use clap::Parser;

/// mimalloc rather than the system allocator: the record path allocates and frees
/// many short-lived buffers across threads, where glibc's malloc spent about a
/// tenth of a node's CPU in the profile (docs/performance.md). Built without
/// transparent huge pages (feature `no_thp`): with them, every Raft group's
/// preallocated queues held a 2 MiB page, 2.3 GiB per node with 1,000 shards.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("error: the async runtime did not start: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: cli::Cli) -> std::process::ExitCode {
    logging::init(&cli.log_format, cli.command.is_server());
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A reader that went away (`shoal get | head`) is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
