//! Tables of up to 10^5 rows (`plan`'s points), drawn as [`super::table`] draws its tables
//! (comfy-table's `UTF8_FULL_CONDENSED`), a row at a time into the output. comfy-table lays a
//! table out in memory, cell by cell, and spends about 0.8 s on 10^5 rows of 11 cells; this
//! spends one pass for the widths and one to write. A test checks that both draw the same.

use std::io::{self, Write};

use unicode_width::UnicodeWidthStr;

/// Writes `header` and `rows` as a table to `out`, each cell left-aligned with one space of
/// padding on each side, each column as wide as its widest cell (in terminal columns).
/// Cells must be single lines: a cell with a line break is drawn by comfy-table instead.
///
/// # Errors
/// Whatever `out` returns.
pub fn write<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    if rows.iter().flatten().any(|cell| cell.contains('\n')) {
        return writeln!(out, "{}", comfy_table(header, rows));
    }
    let mut widths = header.map(UnicodeWidthStr::width);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.width());
        }
    }
    let rule = |out: &mut dyn Write, [left, line, middle, right]: [char; 4]| {
        let mut text = String::from(left);
        for (i, width) in widths.iter().enumerate() {
            if i > 0 {
                text.push(middle);
            }
            text.extend(std::iter::repeat_n(line, width + 2));
        }
        text.push(right);
        writeln!(out, "{text}")
    };
    let mut line = String::new();
    let mut cells = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        line.clear();
        line.push('│');
        for (i, (cell, width)) in cells.zip(widths).enumerate() {
            if i > 0 {
                line.push('┆');
            }
            line.push(' ');
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.width() + 1));
        }
        line.push_str("│\n");
        out.write_all(line.as_bytes())
    };
    rule(out, ['┌', '─', '┬', '┐'])?;
    cells(out, &mut header.into_iter())?;
    rule(out, ['╞', '═', '╪', '╡'])?;
    for row in rows {
        cells(out, &mut row.iter().map(String::as_str))?;
    }
    rule(out, ['└', '─', '┴', '┘'])
}

/// The same table as comfy-table lays it out.
fn comfy_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> comfy_table::Table {
    let mut table = super::table(header);
    for row in rows {
        table.add_row(row.iter().map(String::as_str));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comfy<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
        format!("{}\n", comfy_table(header, rows))
    }

    fn ours<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
        let mut out = Vec::new();
        write(&mut out, header, rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn draws_what_comfy_table_draws() {
        let row = |a: &str, b: &str, c: &str| [a.to_string(), b.to_string(), c.to_string()];
        let header = ["point", "model", "predicted step"];
        for rows in [
            vec![],
            vec![row("vit-mini-no_shard-n1x2-mb4", "vit-mini", "0.048 s")],
            vec![
                row("a", "", "1"),
                row("a-much-longer-point-id-than-its-header", "ViT-ß×", "12.5 GiB"),
                row("界面", "x", "≥ 2"),
                row("two\nlines", "y", "z"),
            ],
        ] {
            assert_eq!(ours(header, &rows), comfy(header, &rows), "{rows:?}");
        }
    }
}
