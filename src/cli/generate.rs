//! `certassert completions SHELL` and `certassert man`: shell completions and a man page,
//! generated from the same argument tree the command parses, so they cannot drift.

use super::Result;
use clap::{Args, CommandFactory as _, ValueEnum};
use clap_complete::Shell;
use std::io::Write as _;
use std::process::ExitCode;

/// The shells `completions` writes for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompletionShell {
    /// bash (bash-completion 2)
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
    /// PowerShell
    Powershell,
}

impl From<CompletionShell> for Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
            CompletionShell::Powershell => Shell::PowerShell,
        }
    }
}

/// Arguments of `certassert completions`.
#[derive(Args, Debug)]
#[command(after_help = "\
Install (the script goes to standard output):
  certassert completions bash > ~/.local/share/bash-completion/completions/certassert
  certassert completions zsh > \"${fpath[1]}/_certassert\"
  certassert completions fish > ~/.config/fish/completions/certassert.fish
  certassert completions powershell >> $PROFILE")]
pub struct CompletionsArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Write the completion script for `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut command = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(
        Shell::from(args.shell),
        &mut command,
        "certassert",
        &mut out,
    );
    super::print(&String::from_utf8(out)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Write the man page, certassert(1) with every subcommand's options, as roff to stdout.
pub fn man() -> Result<ExitCode> {
    let command = super::Cli::command();
    let page = clap_mangen::Man::new(command.clone());
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    // The long description is laid out by hand (key references, examples): keep its lines.
    if let Some(text) = command.get_long_about() {
        writeln!(
            out,
            ".SH DESCRIPTION\n.nf\n{}\n.fi",
            escape(&text.to_string())
        )?;
    }
    page.render_options_section(&mut out)?;
    // clap_mangen renders one command; the subcommands follow as sections of the same page.
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_section(sub, &format!("certassert {}", sub.get_name()), &mut out)?;
    }
    page.render_version_section(&mut out)?;
    std::io::stdout().lock().write_all(&out).or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One subcommand (and its own subcommands) as a `.SH` section: synopsis and options.
fn render_section(command: &clap::Command, path: &str, out: &mut Vec<u8>) -> Result<()> {
    if command.has_subcommands() {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            render_section(sub, &format!("{path} {}", sub.get_name()), out)?;
        }
        return Ok(());
    }
    let command = command.clone().bin_name(path);
    let man = clap_mangen::Man::new(command.clone());
    writeln!(out, ".SH \"{}\"", path.to_uppercase())?;
    if let Some(about) = command.get_about() {
        writeln!(out, "{}", escape(&about.to_string()))?;
    }
    writeln!(out, ".SS SYNOPSIS")?;
    // render_synopsis_section writes its own .SH header; demote it to the body of ours.
    let mut synopsis = Vec::new();
    man.render_synopsis_section(&mut synopsis)?;
    out.extend(strip_header(&synopsis));
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        writeln!(out, ".SS OPTIONS")?;
        let mut options = Vec::new();
        man.render_options_section(&mut options)?;
        out.extend(strip_header(&options));
    }
    if let Some(after) = command.get_after_help() {
        writeln!(out, ".SS EXAMPLES")?;
        writeln!(out, ".nf")?;
        writeln!(out, "{}", escape(&after.to_string()))?;
        writeln!(out, ".fi")?;
    }
    Ok(())
}

/// A section rendered by clap_mangen without its `.SH` header line (it writes a string
/// definition, then the header, then the body).
fn strip_header(section: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(section)
        .lines()
        .filter(|line| !line.starts_with(".SH "))
        .flat_map(|line| [line.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

/// Text for a roff body: backslashes doubled, and a line starting with `.` or `'` (which
/// roff would read as a request) guarded with `\&`.
fn escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\\\");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
