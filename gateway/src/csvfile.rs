//! The operator's CSV files (inventory, rate decks): a required header line
//! naming the columns, `#` comments, surrounding spaces trimmed, rows that
//! may leave trailing columns out or empty.

use std::sync::Arc;

/// One data row, numbered from 1 (the line after the header).
pub struct Row {
    /// Row number.
    pub number: usize,
    headers: Arc<csv::StringRecord>,
    record: csv::StringRecord,
}

impl Row {
    /// The value of column `name`, if the row has a non-empty one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .position(|h| h == name)
            .and_then(|p| self.record.get(p))
            .filter(|v| !v.is_empty())
    }
}

/// The rows of `text`, whose header must be `header` (or at least start
/// with its first column); a row that cannot be read is an error naming it.
pub fn rows<'a>(
    text: &'a str,
    header: &str,
) -> Result<impl Iterator<Item = Result<Row, String>> + 'a, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = Arc::new(reader.headers().map_err(|e| e.to_string())?.clone());
    if headers.get(0) != header.split(',').next() {
        return Err(format!("the first line must be the header {header}"));
    }
    Ok(reader.into_records().enumerate().map(move |(i, rec)| {
        let number = i + 1;
        rec.map(|record| Row {
            number,
            headers: headers.clone(),
            record,
        })
        .map_err(|e| format!("row {number}: {e}"))
    }))
}
