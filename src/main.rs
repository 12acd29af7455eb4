//! The `almanac` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    almanac::cli::main()
}
