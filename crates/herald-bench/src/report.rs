//! `herald-bench report`: docs/PERFORMANCE.md and its SVG charts from the JSON results.

/// Arguments of `herald-bench report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[arg(long, value_name = "DIR")]
    pub results: std::path::PathBuf,
    #[arg(long, value_name = "FILE")]
    pub out: std::path::PathBuf,
}

pub fn run(_args: &ReportArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
