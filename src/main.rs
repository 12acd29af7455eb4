//! The `almanac` binary: parses the command line and hands over to the library.

/// mimalloc instead of the system allocator: rows are allocated on one thread
/// (reading, decoding) and freed on another, where glibc's arenas spent most of
/// the import's time in `malloc_consolidate` and lock waits.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    almanac::cli::main()
}
