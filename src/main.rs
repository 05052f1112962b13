//! The `certassert` command: parse arguments, call the library, print.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
