//! The `txdisk` command-line program: argument parsing and presentation only; every
//! subcommand is a call into the library crates.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "txdisk", version, about = "A crash-safe transactional logical disk")]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
