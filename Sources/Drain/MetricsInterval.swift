import Foundation
import S3

/// One series over a publishing interval: what CloudWatch gets (it aggregates per period, so counters go as their
/// increase, not their running total).
struct IntervalSample: Sendable, Hashable {
    enum Value: Sendable, Hashable {
        /// A gauge's value, or a counter's increase over the interval.
        case single(Double)
        /// A histogram's observations over the interval; min and max are nil when there were none.
        case statistics(count: Double, sum: Double, minimum: Double?, maximum: Double?)
    }

    var descriptor: MetricDescriptor
    var labels: [MetricLabel]
    var value: Value
}

/// Turns successive snapshots into intervals for one publishing target. A target that failed to send keeps its
/// baseline, so the next interval carries what the failed one held (counts are not lost, extremes are merged).
struct IntervalTracker: Sendable {
    private var baseline: [String: Double] = [:]
    private var extremes: [String: (minimum: Double, maximum: Double)] = [:]

    /// The interval from the last committed snapshot to `snapshot`. Counters start from zero (they count since the
    /// process started).
    mutating func interval(_ snapshot: MetricsSnapshot) -> [IntervalSample] {
        var samples: [IntervalSample] = []
        for family in snapshot.families {
            for sample in family.samples {
                let key = Self.key(family.descriptor, sample.labels)
                switch family.descriptor.type {
                case .gauge:
                    samples.append(
                        IntervalSample(
                            descriptor: family.descriptor, labels: sample.labels, value: .single(sample.value)))
                case .counter:
                    // A counter below its baseline was reset (a registry rebuilt): its whole value is the increase.
                    let previous = baseline[key] ?? 0
                    let increase = sample.value >= previous ? sample.value - previous : sample.value
                    samples.append(
                        IntervalSample(descriptor: family.descriptor, labels: sample.labels, value: .single(increase)))
                case .histogram:
                    guard let histogram = sample.histogram else { continue }
                    if let minimum = histogram.windowMinimum, let maximum = histogram.windowMaximum {
                        let merged = extremes[key].map { (min($0.minimum, minimum), max($0.maximum, maximum)) }
                        extremes[key] = merged ?? (minimum, maximum)
                    }
                    let count = Double(histogram.count) - (baseline[key + "#count"] ?? 0)
                    let sum = histogram.sum - (baseline[key + "#sum"] ?? 0)
                    samples.append(
                        IntervalSample(
                            descriptor: family.descriptor, labels: sample.labels,
                            value: .statistics(
                                count: max(0, count), sum: max(0, sum), minimum: extremes[key]?.minimum,
                                maximum: extremes[key]?.maximum)))
                }
            }
        }
        return samples
    }

    /// The snapshot was sent: the next interval starts from it.
    mutating func commit(_ snapshot: MetricsSnapshot) {
        for family in snapshot.families {
            for sample in family.samples {
                let key = Self.key(family.descriptor, sample.labels)
                switch family.descriptor.type {
                case .gauge: continue
                case .counter: baseline[key] = sample.value
                case .histogram:
                    baseline[key + "#count"] = Double(sample.histogram?.count ?? 0)
                    baseline[key + "#sum"] = sample.histogram?.sum ?? 0
                }
            }
        }
        extremes = [:]
    }

    private static func key(_ descriptor: MetricDescriptor, _ labels: [MetricLabel]) -> String {
        descriptor.name + MetricsSnapshot.labelSet(labels)
    }
}

extension IntervalSample {
    /// The CloudWatch data point: labels become dimensions (after `extraDimensions`); a histogram interval with no
    /// observation sends nothing.
    func datum(extraDimensions: [MetricDatum.Dimension], timestamp: Date) -> MetricDatum? {
        let dimensions =
            extraDimensions + labels.map { MetricDatum.Dimension($0.name, $0.value.isEmpty ? "none" : $0.value) }
        let value: MetricDatum.Value
        switch self.value {
        case .single(let single):
            value = .single(single)
        case .statistics(let count, let sum, let minimum, let maximum):
            guard count > 0 else { return nil }
            let mean = sum / count
            value = .statistics(sampleCount: count, sum: sum, minimum: minimum ?? mean, maximum: maximum ?? mean)
        }
        return MetricDatum(
            name: descriptor.name, dimensions: dimensions, value: value, unit: descriptor.unit.rawValue,
            timestamp: timestamp)
    }
}

/// CloudWatch Embedded Metric Format: JSON lines that the CloudWatch agent (or Lambda, ECS, EKS log drivers) turn
/// into metrics, without a PutMetricData call from this process.
enum EmbeddedMetricFormat {
    /// At most this many metrics in one line (EMF's limit per directive).
    static let maximumMetricsPerLine = 100

    /// One line per group of series sharing their label values (the line's dimensions), metrics split 100 a line.
    /// A histogram interval goes as `<name>_sum` (its unit) and `<name>_count` (Count).
    static func lines(
        _ samples: [IntervalSample], namespace: String, extraDimensions: [MetricDatum.Dimension], timestamp: Date
    ) -> [String] {
        struct Group {
            var labels: [MetricLabel]
            var metrics: [(name: String, unit: String, value: Double)] = []
        }
        var groups: [String: Group] = [:]
        var order: [String] = []
        for sample in samples {
            let labels = sample.labels.map { MetricLabel($0.name, $0.value.isEmpty ? "none" : $0.value) }
            let key = MetricsSnapshot.labelSet(labels.sorted { $0.name < $1.name })
            if groups[key] == nil {
                groups[key] = Group(labels: labels.sorted { $0.name < $1.name })
                order.append(key)
            }
            switch sample.value {
            case .single(let value):
                groups[key]!.metrics.append((sample.descriptor.name, sample.descriptor.unit.rawValue, value))
            case .statistics(let count, let sum, _, _):
                groups[key]!.metrics.append((sample.descriptor.name + "_sum", sample.descriptor.unit.rawValue, sum))
                groups[key]!.metrics.append((sample.descriptor.name + "_count", MetricUnit.count.rawValue, count))
            }
        }
        let milliseconds = Int64((timestamp.timeIntervalSince1970 * 1000).rounded())
        var lines: [String] = []
        for key in order {
            let group = groups[key]!
            let dimensionNames = extraDimensions.map(\.name) + group.labels.map(\.name)
            var start = 0
            while start < group.metrics.count {
                let slice = group.metrics[start..<min(start + maximumMetricsPerLine, group.metrics.count)]
                var object: [String: Any] = [
                    "_aws": [
                        "Timestamp": milliseconds,
                        "CloudWatchMetrics": [
                            [
                                "Namespace": namespace, "Dimensions": [dimensionNames],
                                "Metrics": slice.map { ["Name": $0.name, "Unit": $0.unit] },
                            ] as [String: Any]
                        ],
                    ] as [String: Any]
                ]
                for dimension in extraDimensions { object[dimension.name] = dimension.value }
                for label in group.labels { object[label.name] = label.value }
                for metric in slice { object[metric.name] = metric.value }
                if let data = try? JSONSerialization.data(
                    withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                {
                    lines.append(String(decoding: data, as: UTF8.self))
                }
                start += maximumMetricsPerLine
            }
        }
        return lines
    }
}
