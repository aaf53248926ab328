//! Command lines printed for a user to paste (the resume line of an interrupted `run`, and
//! the like): quoted so that a POSIX shell (sh, bash, zsh) runs exactly these words, whatever
//! the paths hold (spaces, quotes, `$`, backticks, newlines, non-ASCII, bytes that are not
//! UTF-8).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// `words` as one shell command line. UTF-8 text is quoted by `shlex` (single quotes where
/// needed); a byte that is not UTF-8 becomes `"$(printf '\NNN')"` (octal, POSIX printf), so
/// the line itself is printable text and still gives the shell the exact bytes.
pub fn command_line<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    words.into_iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

/// One word, quoted for a POSIX shell.
pub fn quote(word: &OsStr) -> String {
    let bytes = word.as_bytes();
    if bytes.is_empty() {
        return "''".into();
    }
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        let text = chunk.valid();
        if !text.is_empty() {
            // Only NUL is refused, and an OsStr from a path or argument cannot hold one.
            out += &shlex::try_quote(text).unwrap_or_else(|_| text.replace('\0', "").into());
        }
        for byte in chunk.invalid() {
            out += &format!("\"$(printf '\\{byte:03o}')\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn a_pasted_line_gives_the_shell_exactly_its_words() {
        let words: Vec<OsString> = [
            &b"plain"[..],
            b"with space",
            b"it's",
            b"say \"hi\"",
            b"$HOME and $(date) and `id`",
            b"back\\slash",
            b"line\nbreak",
            b"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
            b"caf\xe9.toml",
            b"\xff\xfe",
            b"-n",
            b"~",
            b"*.toml",
            b"",
            b"!",
        ]
        .iter()
        .map(|b| OsString::from_vec(b.to_vec()))
        .collect();
        let line = command_line(std::iter::once(OsStr::new("printf")).chain(
            std::iter::once(OsStr::new("%s\\0")).chain(words.iter().map(OsString::as_os_str)),
        ));
        assert!(std::str::from_utf8(line.as_bytes()).is_ok(), "printable: {line}");
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell).arg("-c").arg(&line).output().unwrap();
            assert!(out.status.success(), "{shell}: {line}");
            let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
            let want: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
            assert_eq!(&got[..got.len() - 1], &want[..], "{shell}: {line}");
        }
    }
}
