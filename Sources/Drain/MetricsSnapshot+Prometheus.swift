import Foundation

extension MetricsSnapshot {
    /// The content type of `prometheusText()`: the text exposition format 0.0.4.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The snapshot in the Prometheus text exposition format 0.0.4: per family `# HELP` and `# TYPE`, then one line
    /// per series (`name{label="value",...} value`); a histogram as cumulative `_bucket{le="..."}` lines ending with
    /// `le="+Inf"`, then `_sum` and `_count`. Label values escape `\`, `"` and line feeds; help text escapes `\` and
    /// line feeds. No timestamps: the scraper (or the textfile collector) stamps the samples.
    public func prometheusText() -> String {
        var output = ""
        for family in families {
            let descriptor = family.descriptor
            output += "# HELP \(descriptor.name) \(Self.escapeHelp(descriptor.help))\n"
            output += "# TYPE \(descriptor.name) \(descriptor.type.rawValue)\n"
            for sample in family.samples {
                guard let histogram = sample.histogram else {
                    output += descriptor.name + Self.labelSet(sample.labels) + " " + Self.number(sample.value) + "\n"
                    continue
                }
                let bounds = histogram.upperBounds.map(Self.number) + ["+Inf"]
                for (bound, count) in zip(bounds, histogram.cumulativeCounts) {
                    output +=
                        descriptor.name + "_bucket" + Self.labelSet(sample.labels + [MetricLabel("le", bound)])
                        + " " + String(count) + "\n"
                }
                output +=
                    descriptor.name + "_sum" + Self.labelSet(sample.labels) + " " + Self.number(histogram.sum) + "\n"
                output +=
                    descriptor.name + "_count" + Self.labelSet(sample.labels) + " " + String(histogram.count) + "\n"
            }
        }
        return output
    }

    /// `{a="x",b="y"}`, or nothing without labels.
    static func labelSet(_ labels: [MetricLabel]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.name)=\"\(escapeLabelValue($0.value))\"" }.joined(separator: ",") + "}"
    }

    /// A label value with `\`, `"` and line feeds escaped.
    static func escapeLabelValue(_ value: String) -> String {
        var escaped = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// Help text with `\` and line feeds escaped.
    static func escapeHelp(_ help: String) -> String {
        help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A sample value as Prometheus reads it: integers without a fraction, `+Inf`, `-Inf`, `NaN`, else the shortest
    /// decimal that reads back as the same double.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(describing: value)
    }
}

extension MetricsSnapshot {
    /// Replaces the file at `path` with `prometheusText()` atomically (a temporary file in the same directory,
    /// fsynced, renamed over it): a textfile collector never reads half a file.
    ///
    /// - Throws: an error naming the failed call and path.
    public func writePrometheusFile(to path: String) throws {
        try AtomicFile.replace(path, with: prometheusText())
    }
}
