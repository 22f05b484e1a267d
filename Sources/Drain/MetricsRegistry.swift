import Synchronization

/// What a metric measures over time: a count that only grows, a value that goes up and down, or a distribution.
public enum MetricType: String, Sendable, Hashable {
    /// Only grows (resets when the process restarts).
    case counter
    /// Goes up and down.
    case gauge
    /// Observations counted into fixed buckets, with their sum and count.
    case histogram
}

/// The unit of a metric, as CloudWatch names it (Prometheus carries it in the metric's name instead).
public enum MetricUnit: String, Sendable, Hashable {
    /// A count of things.
    case count = "Count"
    /// Bytes.
    case bytes = "Bytes"
    /// Seconds.
    case seconds = "Seconds"
    /// No unit (a 0/1 flag).
    case none = "None"
}

/// A metric family: its name, type, help text, unit, label names and (for histograms) bucket bounds.
///
/// Names follow Prometheus conventions (`[a-zA-Z_:][a-zA-Z0-9_:]*`, `_total` for counters, the unit as a suffix);
/// label names are `[a-zA-Z_][a-zA-Z0-9_]*`, never `le` and never starting with `__`.
public struct MetricDescriptor: Sendable, Hashable {
    /// The metric name.
    public let name: String
    /// Counter, gauge or histogram.
    public let type: MetricType
    /// One line for `# HELP`.
    public let help: String
    /// The unit (for CloudWatch and EMF).
    public let unit: MetricUnit
    /// The label names, in the order they are written.
    public let labelNames: [String]
    /// Upper bounds of a histogram's buckets, ascending and finite (`+Inf` is implied).
    public let buckets: [Double]

    /// A metric family.
    ///
    /// - Parameters:
    ///   - name: The metric name.
    ///   - type: Counter, gauge or histogram.
    ///   - help: One line of help.
    ///   - unit: The unit.
    ///   - labelNames: The label names.
    ///   - buckets: A histogram's bucket upper bounds, ascending; ignored for counters and gauges.
    public init(
        _ name: String, _ type: MetricType, help: String, unit: MetricUnit, labelNames: [String] = [],
        buckets: [Double] = []
    ) {
        precondition(Self.isValidName(name), "metric name '\(name)' is not a Prometheus metric name")
        precondition(
            labelNames.allSatisfy { Self.isValidLabelName($0) && $0 != "le" && !$0.hasPrefix("__") },
            "metric \(name): label names \(labelNames) are not all valid")
        precondition(
            type != .histogram
                || (!buckets.isEmpty && buckets.allSatisfy(\.isFinite)
                    && zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 }),
            "histogram \(name) needs finite, strictly ascending buckets")
        self.name = name
        self.type = type
        self.help = help
        self.unit = unit
        self.labelNames = labelNames
        self.buckets = type == .histogram ? buckets : []
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !isDigit(first) else { return false }
        return name.utf8.allSatisfy {
            isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":")
        }
    }

    static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !isDigit(first) else { return false }
        return name.utf8.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    private static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
}

/// One label of a series.
public struct MetricLabel: Sendable, Hashable {
    /// The label name.
    public var name: String
    /// Its value.
    public var value: String

    /// A label.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A histogram series: counts per bucket, the sum and count of observations, and the smallest and largest
/// observation of the current window (what CloudWatch's `StatisticValues` need).
public struct HistogramValue: Sendable, Hashable {
    /// The buckets' upper bounds (`+Inf` implied after the last).
    public var upperBounds: [Double]
    /// Observations per bucket, not cumulative; one more entry than `upperBounds` (the `+Inf` bucket).
    public var bucketCounts: [UInt64]
    /// Observations.
    public var count: UInt64
    /// Their sum.
    public var sum: Double
    /// The smallest observation since the window was last reset; nil when none.
    public var windowMinimum: Double?
    /// The largest observation since the window was last reset; nil when none.
    public var windowMaximum: Double?

    init(upperBounds: [Double]) {
        self.upperBounds = upperBounds
        bucketCounts = Array(repeating: 0, count: upperBounds.count + 1)
        count = 0
        sum = 0
    }

    /// Cumulative counts per bound, `+Inf` last: what Prometheus's `_bucket{le=...}` lines show.
    public var cumulativeCounts: [UInt64] {
        var total: UInt64 = 0
        return bucketCounts.map {
            total += $0
            return total
        }
    }

    mutating func observe(_ value: Double) {
        let index = upperBounds.firstIndex { value <= $0 } ?? upperBounds.count
        bucketCounts[index] += 1
        count += 1
        sum += value
        windowMinimum = Swift.min(windowMinimum ?? value, value)
        windowMaximum = Swift.max(windowMaximum ?? value, value)
    }
}

/// One series of a family at the time of a snapshot.
public struct MetricSample: Sendable, Hashable {
    /// Its labels, in the family's label order.
    public var labels: [MetricLabel]
    /// The value of a counter or gauge; the sum of a histogram.
    public var value: Double
    /// A histogram's buckets, sum and count.
    public var histogram: HistogramValue?

    /// The value of a label.
    public func label(_ name: String) -> String? { labels.first { $0.name == name }?.value }
}

/// A family with its series at the time of a snapshot.
public struct MetricFamilySnapshot: Sendable, Hashable {
    /// The family.
    public var descriptor: MetricDescriptor
    /// Its series, ordered by label values.
    public var samples: [MetricSample]
}

/// Every family of a registry at one instant.
public struct MetricsSnapshot: Sendable, Hashable {
    /// The families, in registration order.
    public var families: [MetricFamilySnapshot]

    /// A snapshot of these families.
    public init(families: [MetricFamilySnapshot]) { self.families = families }

    /// The family with this name.
    public func family(_ name: String) -> MetricFamilySnapshot? { families.first { $0.descriptor.name == name } }

    /// The value of the series whose labels include all of `labels` (the sum of those series when several match);
    /// nil when the family is missing or no series matches.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching =
            family(name)?.samples.filter { sample in
                labels.allSatisfy { sample.label($0.key) == $0.value }
            } ?? []
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    /// This snapshot's families followed by those of `other` whose names this one lacks.
    public func merging(_ other: MetricsSnapshot) -> MetricsSnapshot {
        let names = Set(families.map(\.descriptor.name))
        return MetricsSnapshot(families: families + other.families.filter { !names.contains($0.descriptor.name) })
    }
}

/// Counters, gauges and histograms with labels, safe to update from any thread.
///
/// A family is registered once (explicitly, or by its first update) and appears in every snapshot from then on, even
/// with no series yet. Label values are passed by name; a family's series are kept in a dictionary keyed by their
/// values, so an update costs one lock and one hash lookup.
public final class MetricsRegistry: Sendable {
    private struct Series {
        var value: Double = 0
        var histogram: HistogramValue?
    }

    private struct Family {
        var descriptor: MetricDescriptor
        var series: [[String]: Series] = [:]
    }

    private struct State {
        var families: [String: Family] = [:]
        var order: [String] = []
    }

    private let state = Mutex(State())

    /// An empty registry.
    public init() {}

    /// Registers families so they show in snapshots before their first update. Registering a family again is a no-op.
    public func register(_ descriptors: [MetricDescriptor]) {
        state.withLock { state in
            for descriptor in descriptors { Self.family(descriptor, in: &state) }
        }
    }

    /// Adds `amount` (not negative) to a counter, or to a gauge.
    ///
    /// - Parameters:
    ///   - descriptor: The counter or gauge.
    ///   - amount: What to add.
    ///   - labels: The label values by name; a missing label is empty.
    public func add(_ descriptor: MetricDescriptor, _ amount: Double = 1, labels: [String: String] = [:]) {
        precondition(descriptor.type != .histogram, "\(descriptor.name) is a histogram: observe it")
        precondition(descriptor.type == .gauge || amount >= 0, "counter \(descriptor.name) cannot decrease")
        update(descriptor, labels) { $0.value += amount }
    }

    /// Sets a gauge.
    public func set(_ descriptor: MetricDescriptor, _ value: Double, labels: [String: String] = [:]) {
        precondition(descriptor.type == .gauge, "\(descriptor.name) is not a gauge")
        update(descriptor, labels) { $0.value = value }
    }

    /// Replaces every series of a gauge with these (series not listed disappear: a destination removed, a code gone).
    public func replaceSeries(_ descriptor: MetricDescriptor, _ series: [([String: String], Double)]) {
        precondition(descriptor.type == .gauge, "\(descriptor.name) is not a gauge")
        state.withLock { state in
            Self.family(descriptor, in: &state)
            var replaced: [[String]: Series] = [:]
            for (labels, value) in series { replaced[Self.key(descriptor, labels)] = Series(value: value) }
            state.families[descriptor.name]!.series = replaced
        }
    }

    /// Counts an observation into a histogram.
    public func observe(_ descriptor: MetricDescriptor, _ value: Double, labels: [String: String] = [:]) {
        precondition(descriptor.type == .histogram, "\(descriptor.name) is not a histogram")
        guard value.isFinite else { return }
        update(descriptor, labels) { series in
            if series.histogram == nil { series.histogram = HistogramValue(upperBounds: descriptor.buckets) }
            series.histogram!.observe(value)
            series.value = series.histogram!.sum
        }
    }

    /// Makes a series exist with its zero value, so it is exported before anything happens (`rate()` and alarms
    /// need the zero).
    public func touch(_ descriptor: MetricDescriptor, labels: [String: String] = [:]) {
        update(descriptor, labels) { series in
            if descriptor.type == .histogram && series.histogram == nil {
                series.histogram = HistogramValue(upperBounds: descriptor.buckets)
            }
        }
    }

    /// Every family and series now.
    ///
    /// - Parameter resettingWindows: Start a new min/max window in every histogram (its single consumer, the
    ///   CloudWatch publisher, asks for this), atomically with the snapshot.
    public func snapshot(resettingWindows: Bool = false) -> MetricsSnapshot {
        state.withLock { state in
            let families = state.order.map { name -> MetricFamilySnapshot in
                let family = state.families[name]!
                let samples = family.series.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { key, series in
                    MetricSample(
                        labels: zip(family.descriptor.labelNames, key).map { MetricLabel($0, $1) },
                        value: series.value, histogram: series.histogram)
                }
                return MetricFamilySnapshot(descriptor: family.descriptor, samples: samples)
            }
            if resettingWindows {
                for name in state.order {
                    for key in state.families[name]!.series.keys {
                        state.families[name]!.series[key]!.histogram?.windowMinimum = nil
                        state.families[name]!.series[key]!.histogram?.windowMaximum = nil
                    }
                }
            }
            return MetricsSnapshot(families: families)
        }
    }

    private func update(_ descriptor: MetricDescriptor, _ labels: [String: String], _ body: (inout Series) -> Void) {
        let key = Self.key(descriptor, labels)
        state.withLock { state in
            Self.family(descriptor, in: &state)
            body(&state.families[descriptor.name]!.series[key, default: Series()])
        }
    }

    private static func key(_ descriptor: MetricDescriptor, _ labels: [String: String]) -> [String] {
        assert(
            labels.keys.allSatisfy(descriptor.labelNames.contains),
            "\(descriptor.name) has no label named in \(labels.keys.sorted())")
        return descriptor.labelNames.map { labels[$0] ?? "" }
    }

    private static func family(_ descriptor: MetricDescriptor, in state: inout State) {
        if let existing = state.families[descriptor.name] {
            precondition(existing.descriptor == descriptor, "metric \(descriptor.name) registered twice, differently")
            return
        }
        state.families[descriptor.name] = Family(descriptor: descriptor)
        state.order.append(descriptor.name)
    }
}
