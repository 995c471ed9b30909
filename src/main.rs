//! The `latchkey` binary: everything lives in the library; see `latchkey::cli`.

fn main() -> std::process::ExitCode {
    latchkey::cli::run()
}
