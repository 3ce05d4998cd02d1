//! `brn`: derain images, score weights with the paper's metrics, benchmark, synthesise rain,
//! train and export. Argument parsing and dispatch only; each command lives in `brn::cmd`.

use std::process::ExitCode;

use brn::cmd::{bench, derain, eval, export, synth, train};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "brn",
    version,
    about = "BRN single-image deraining (Ren et al., TIP 2020)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Derain image files or folders of images; writes PNGs of the input's pixel size.
    Derain(derain::DerainArgs),
    /// Score weights on a paired test set with the paper's Y-channel PSNR/SSIM.
    Eval(eval::EvalArgs),
    /// Time and peak memory of one forward pass (BRN, random weights) on the CPU, of training
    /// steps (--train, any device), or of the training data loader (--loader CONFIG).
    Bench(bench::BenchArgs),
    /// Make rainy/clean training pairs from clean photos (writes OUT/rainy/NAME + OUT/clean/NAME).
    Synth(synth::SynthArgs),
    /// Train any member of the family from a JSON config (see README), with checkpoints and resume.
    Train(train::TrainArgs),
    /// Write the inference-only record of a training run's latest checkpoint (what the page embeds).
    Export(export::ExportArgs),
}

fn main() -> ExitCode {
    brn::allocator::reuse_large_blocks();
    let cli = Cli::parse();
    // A cap on the kernels' instructions that they would not understand is an error up front.
    if let Err(e) = model::backend::Simd::from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Derain(args) => derain::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Train(args) => train::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
