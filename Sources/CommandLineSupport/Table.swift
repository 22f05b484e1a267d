#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain-text table that fits the terminal: columns padded to their widest cell, the widest column cut with `…`
/// when the whole table would be wider than the screen.
public struct Table {
    /// How a column's cells line up.
    public enum Alignment: Sendable {
        /// Text.
        case left
        /// Numbers.
        case right
    }

    /// A column: its header and alignment.
    public struct Column: Sendable {
        /// The header text.
        public var header: String
        /// Alignment of the cells.
        public var alignment: Alignment

        /// A column.
        public init(_ header: String, _ alignment: Alignment = .left) {
            self.header = header
            self.alignment = alignment
        }
    }

    /// The columns.
    public var columns: [Column]
    /// The rows: one string per column.
    public var rows: [[String]] = []

    /// A table with these columns.
    public init(_ columns: [Column]) { self.columns = columns }

    /// Adds a row.
    public mutating func append(_ row: [String]) { rows.append(row) }

    /// The table as lines of text, at most `width` columns wide.
    public func render(width: Int = Terminal.width) -> String {
        var widths = columns.map { $0.header.count }
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count {
                widths[index] = max(widths[index], cell.count)
            }
        }
        let separator = 2
        var total = widths.reduce(0, +) + separator * max(0, widths.count - 1)
        // Shrink the widest columns (never below 8 characters) until the table fits.
        while total > width, let widest = widths.indices.max(by: { widths[$0] < widths[$1] }), widths[widest] > 8 {
            widths[widest] -= 1
            total -= 1
        }
        var lines: [String] = []
        lines.append(line(columns.map(\.header), widths: widths))
        for row in rows { lines.append(line(row, widths: widths)) }
        return lines.joined(separator: "\n")
    }

    private func line(_ cells: [String], widths: [Int]) -> String {
        var parts: [String] = []
        for (index, width) in widths.enumerated() {
            var cell = index < cells.count ? cells[index] : ""
            if cell.count > width { cell = String(cell.prefix(max(0, width - 1))) + "…" }
            let padding = String(repeating: " ", count: width - cell.count)
            let isLast = index == widths.count - 1
            switch columns[index].alignment {
            case .left: parts.append(isLast ? cell : cell + padding)
            case .right: parts.append(padding + cell)
            }
        }
        return parts.joined(separator: "  ")
    }
}

/// Facts about where output goes.
public enum Terminal {
    /// The terminal's width, or 120 when output is not a terminal (pipes and files get full lines up to that).
    public static var width: Int {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let columns = getenv("COLUMNS").flatMap({ Int(String(cString: $0)) }), columns > 0 { return columns }
        return 120
    }

    /// Whether standard output is a terminal.
    public static var standardOutputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// Whether standard error is a terminal.
    public static var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}
