//! Generated documentation: the man pages, the shell completions and the daemon's environment
//! file (/etc/default/chitty), all made from the clap definitions the binaries parse, so that
//! `--help`, `man chittyd`, what the shell completes and what the conffile lists cannot disagree.
//!
//! The output is committed (under `man/` and `packaging/`) so that it can be read and reviewed
//! and so that packaging needs no build step of its own; `cargo run -p chitty-docs` rewrites it,
//! and the drift test (`tools/docs/tests/docs.rs`) regenerates everything and fails when a
//! committed file differs from what the command lines give. This is a tool crate (chitty-docs),
//! not part of the runtime library, so chittyd links no man-page or completion generator.
//!
//! A man page is clap_mangen's NAME, SYNOPSIS, DESCRIPTION and OPTIONS, one COMMANDS entry per
//! subcommand, and the hand-written sections of `man/sections/NAME.roff`: a reader needs the
//! protocol, the files, the signals and the exit codes, which no `--help` carries. A hand-written
//! DESCRIPTION continues the generated one; every other section follows the options, in the
//! order of the file.

use chitty::client::cli::ChittyCli;
use chitty::config::DaemonArgs;
use chittyctl::cli::CtlCli;
use clap::{ArgAction, Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One installed program whose man page and completions come from its clap definition.
pub struct Program {
    /// The binary's name, which is also the man page's and the completions' name.
    pub name: &'static str,
    /// The man section: "1" for users' commands, "8" for administration.
    pub section: &'static str,
    /// Its command line.
    pub command: fn() -> Command,
    /// The hand-written sections of its man page: roff, one `.SH` block per section.
    pub sections: &'static str,
}

/// Every program the package installs: one entry each, with its `man/sections/` file.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "chittyd",
        section: "8",
        command: <DaemonArgs as CommandFactory>::command,
        sections: include_str!("../../../man/sections/chittyd.roff"),
    },
    Program {
        name: "chitty",
        section: "1",
        command: <ChittyCli as CommandFactory>::command,
        sections: include_str!("../../../man/sections/chitty.roff"),
    },
    Program {
        name: "chittyctl",
        section: "8",
        command: <CtlCli as CommandFactory>::command,
        sections: include_str!("../../../man/sections/chittyctl.roff"),
    },
];

/// The date on the man pages: the last change that mattered to a reader. A fixed value keeps the
/// pages reproducible (a build date would make them drift every day); bump it with the content.
pub const DATE: &str = "2026-12-04";

/// The shells completions are made for, in the layout `packaging/completions/` uses.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Environment variables the packaged unit (systemd/chitty.service) sets with `Environment=`,
/// where the service's default differs from chittyd's own. /etc/default/chitty shows these
/// values; the drift test (tools/docs/tests/docs.rs) checks that the unit sets exactly these.
pub const UNIT_ENVIRONMENT: &[(&str, &str)] = &[("CHITTY_AUDIT_LOG", "/var/log/chitty/audit.log")];

/// Every generated file: its path relative to the repository root, and its content.
pub fn generated() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for program in PROGRAMS {
        let page = format!("man/{}.{}", program.name, program.section);
        files.push((PathBuf::from(page), man_page(program)));
        for shell in SHELLS {
            files.push((
                completion_path(program.name, shell),
                completion(program, shell),
            ));
        }
    }
    files.push((
        PathBuf::from("packaging/default/chitty"),
        environment_file(),
    ));
    files
}

/// Where a completion script lives in the repository. The file name is the one each shell looks
/// for in the system directory it is installed to (bash: the command's name; zsh: `_` and the
/// name; fish: the name and `.fish`).
pub fn completion_path(name: &str, shell: Shell) -> PathBuf {
    let file = match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_owned(),
    };
    PathBuf::from(format!("packaging/completions/{shell}/{file}"))
}

/// A program's completion script for one shell.
pub fn completion(program: &Program, shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut (program.command)(), program.name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The definition clap_mangen puts before every rendered piece; a page needs it once, at the top.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// Renders one piece of a page into a string, without the preamble; writing into memory cannot
/// fail.
fn render(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).expect("writing into a Vec cannot fail");
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix(PREAMBLE).unwrap_or(&text).to_owned()
}

/// A program's whole man page, in roff.
pub fn man_page(program: &Program) -> String {
    let mut cmd = (program.command)();
    cmd.build();
    let man = Man::new(cmd.clone())
        .title(program.name.to_uppercase())
        .section(program.section)
        .date(DATE)
        .source(format!("chitty {}", version()))
        .manual("chitty manual");
    let mut hand = split_sections(program.sections);
    let mut page = String::from(PREAMBLE);
    page += &render(|w| man.render_title(w));
    page += &render(|w| man.render_name_section(w));
    page += &render(|w| man.render_synopsis_section(w));
    page += &render(|w| man.render_description_section(w));
    if let Some(i) = hand.iter().position(|(name, _)| name == "DESCRIPTION") {
        let (_, block) = hand.remove(i);
        // The generated DESCRIPTION already opened the section: keep only the body, as a new
        // paragraph unless it opens a subsection.
        let body = block.split_once('\n').map_or("", |(_, body)| body);
        if !body.starts_with(".SS") {
            page += ".PP\n";
        }
        page += body;
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page += &render(|w| man.render_options_section(w));
    }
    page += &commands_section(&cmd);
    for (_, block) in hand {
        page += &block;
    }
    tidy(&page)
}

/// Makes a page pass `mandoc -T lint` and `groff -wall` quietly: the blank line clap_mangen puts
/// between an option's help and its possible values becomes one `.sp` (two `.br` around an empty
/// line draw warnings), trailing white space goes, and text lines are filled to 80 columns,
/// except in no-fill blocks (examples), where line breaks mean something.
fn tidy(page: &str) -> String {
    let page = page.replace("\n.br\n\n.br\n", "\n.sp\n");
    let mut out = String::with_capacity(page.len());
    let mut no_fill = false;
    for line in page.lines() {
        match line.split_whitespace().next() {
            Some(".EX" | ".nf") => no_fill = true,
            Some(".EE" | ".fi") => no_fill = false,
            _ => {}
        }
        let is_text = !line.starts_with(['.', '\'']);
        if no_fill || !is_text {
            out += line;
            out.push('\n');
            continue;
        }
        // An escaped space (`\ `) at the end is content; any other trailing space is not.
        let mut line = line;
        while line.ends_with(' ') && !line.ends_with("\\ ") {
            line = &line[..line.len() - 1];
        }
        out += &fill(line, 80);
    }
    out
}

/// Breaks a roff text line at spaces into lines of at most `width` bytes (a longer word stays
/// whole). Lines with runs of spaces (significant in roff) or escaped spaces are left alone.
fn fill(line: &str, width: usize) -> String {
    if line.len() <= width || line.contains("  ") || line.contains("\\ ") {
        return format!("{line}\n");
    }
    let mut out = String::new();
    let mut current = String::new();
    for word in line.split(' ') {
        if !current.is_empty() && current.len() + 1 + word.len() > width {
            out += &current;
            out.push('\n');
            current.clear();
        }
        if current.is_empty() {
            // A line starting with a dot or an apostrophe would be read as a request.
            if word.starts_with(['.', '\'']) {
                current.push_str("\\&");
            }
        } else {
            current.push(' ');
        }
        current.push_str(word);
    }
    out += &current;
    out.push('\n');
    out
}

/// One entry per subcommand: its synopsis, description and options, under `.SS`. One level of
/// subcommands is all chitty's programs have. clap's own `help` subcommand is left out: the page
/// is the help.
fn commands_section(cmd: &Command) -> String {
    let subs: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if subs.is_empty() {
        return String::new();
    }
    let mut out = String::from(".SH COMMANDS\n");
    for sub in subs {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        out += &format!(".SS \"{name}\"\n");
        let man = Man::new(sub.clone());
        out += &demote(&render(|w| man.render_synopsis_section(w)));
        out += ".PP\n";
        out += &demote(&render(|w| man.render_description_section(w)));
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            out += &demote(&render(|w| man.render_options_section(w)));
        }
    }
    out
}

/// Drops a rendered section's own `.SH` heading, so its body can sit under a subcommand's `.SS`.
fn demote(rendered: &str) -> String {
    let body = rendered
        .strip_prefix(".SH")
        .and_then(|rest| rest.split_once('\n'))
        .map_or(rendered, |(_, body)| body);
    body.replace("\n.SH ", "\n.SS ")
}

/// Splits hand-written roff into `(SECTION NAME, block)` pairs, each block starting with its
/// `.SH` line. Anything before the first `.SH` (a comment for whoever edits the file) is left out.
fn split_sections(roff: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in roff.lines() {
        if let Some(name) = line.strip_prefix(".SH ") {
            sections.push((name.trim().trim_matches('"').to_owned(), String::new()));
        }
        if let Some((_, block)) = sections.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    sections
}

/// The header of /etc/default/chitty; the options follow, generated from chittyd's definition.
const ENVIRONMENT_HEADER: &str = "\
# /etc/default/chitty: options of chittyd when systemd runs it (chitty.service).
#
# Each line is NAME=value, read by systemd's EnvironmentFile= (not by a shell: no
# expansion, no `export`). Every option is listed below with its default, commented
# out. Uncomment and change a line, then run: systemctl restart chitty
# Each variable is also a command-line option of chittyd: see chittyd(8).
#
# This is a configuration file of the chitty package: upgrades keep your changes, and
# only `apt-get purge chitty` removes it. To change the unit itself (a port below 1024,
# limits), use `systemctl edit chitty` rather than this file.
";

/// /etc/default/chitty: every chittyd option that has an environment variable, with its help
/// text and default, commented out.
pub fn environment_file() -> String {
    let mut cmd = DaemonArgs::command();
    cmd.build();
    let mut out = String::from(ENVIRONMENT_HEADER);
    for arg in cmd.get_arguments() {
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            continue;
        };
        let takes_value = !matches!(
            arg.get_action(),
            ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
        );
        let value_name = arg
            .get_value_names()
            .and_then(|names| names.first().map(|n| format!(" {n}")))
            .unwrap_or_default();
        let flag = match arg.get_long() {
            Some(long) if takes_value => format!("--{long}{value_name}"),
            Some(long) => format!("--{long}"),
            None => arg.get_id().to_string(),
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        out.push('\n');
        out += &format!("# {flag}\n");
        out += &comment(&help);
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect();
        if takes_value && !values.is_empty() {
            out += &comment(&format!("One of: {}.", values.join(", ")));
        }
        let unit = UNIT_ENVIRONMENT.iter().find(|(name, _)| *name == env);
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let shown = match unit {
            Some((_, value)) => {
                out += &comment(&format!("chitty.service sets {value}."));
                (*value).to_owned()
            }
            None => default,
        };
        let shown = if shown.contains(char::is_whitespace) {
            format!("\"{shown}\"")
        } else {
            shown
        };
        out += &format!("#{env}={shown}\n");
    }
    out
}

/// Wraps text into `#   ` comment lines of at most 80 columns.
fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#  ");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 80 && line.len() > 3 {
            out += line.trim_end();
            out.push('\n');
            line = String::from("#  ");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 3 {
        out += &line;
        out.push('\n');
    }
    out
}

/// The chitty package's version, as `chittyd --version` prints it: the one that ships (in the man
/// pages' footer and the Debian package), whatever this tool crate's own version is.
pub fn version() -> String {
    DaemonArgs::command()
        .get_version()
        .unwrap_or_default()
        .to_owned()
}

/// The repository's root, where the generated files are committed: two levels above this crate.
pub fn repository_root() -> &'static Path {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).unwrap_or(here)
}

/// Writes every generated file under `root` (the repository), creating folders as needed; what
/// `cargo run -p chitty-docs` does.
pub fn write_all(root: &Path) -> std::io::Result<()> {
    for (path, content) in generated() {
        let path = root.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::File::create(&path)?.write_all(content.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    /// A command shaped like chittyctl: a global option and subcommands with positionals.
    fn admin_like() -> Command {
        Command::new("chittyctl")
            .version("1.0")
            .about("Administers chittyd")
            .arg(Arg::new("socket").long("socket").env("CHITTY_ADMIN_SOCKET"))
            .subcommand(Command::new("users").about("Lists the participants"))
            .subcommand(
                Command::new("kick")
                    .about("Removes a participant")
                    .arg(Arg::new("name").value_name("NAME").required(true))
                    .arg(Arg::new("reason").long("reason").value_name("TEXT")),
            )
    }

    #[test]
    fn subcommands_become_entries_of_one_page() {
        let program = Program {
            name: "chittyctl",
            section: "8",
            command: admin_like,
            sections: include_str!("../../../man/sections/chittyctl.roff"),
        };
        let page = man_page(&program);
        assert!(page.contains(".SS \"chittyctl users\"\n"), "{page}");
        assert!(page.contains(".SS \"chittyctl kick\"\n"), "{page}");
        assert!(
            page.contains("\\fINAME\\fR"),
            "the positional is documented: {page}"
        );
        assert!(page.contains("\\fB\\-\\-reason\\fR"), "{page}");
        assert!(!page.contains("chittyctl help"), "{page}");
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "FILES",
        ] {
            assert_eq!(
                page.matches(&format!("\n.SH {section}\n")).count(),
                1,
                "{section}"
            );
        }
        // Hand-written sections follow the generated ones, in the file's order.
        let commands = page.find("\n.SH COMMANDS\n").unwrap();
        let exit = page.find("\n.SH \"EXIT STATUS\"\n").unwrap();
        let files = page.find("\n.SH FILES\n").unwrap();
        assert!(commands < exit && exit < files);
    }

    #[test]
    fn fill_keeps_lines_short_and_never_starts_a_request() {
        let long = format!(
            "{} .not-a-request {}",
            "word ".repeat(15).trim(),
            "x".repeat(90)
        );
        let filled = fill(&long, 80);
        for line in filled.lines() {
            assert!(line.len() <= 80 || !line.contains(' '), "{line:?}");
            assert!(!line.starts_with('.'), "{line:?}");
        }
        assert!(filled.contains("\\&.not-a-request"), "{filled}");
        assert_eq!(filled.replace("\\&", "").split_whitespace().count(), 17);
    }

    #[test]
    fn tidy_leaves_examples_alone() {
        let example = format!(".EX\n{}\n.EE\n", "y ".repeat(60));
        assert_eq!(tidy(&example), example);
        assert_eq!(tidy("a\n.br\n\n.br\nb\n"), "a\n.sp\nb\n");
        assert_eq!(tidy("trailing   \n"), "trailing\n");
    }
}
