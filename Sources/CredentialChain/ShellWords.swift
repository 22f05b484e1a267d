/// Splits a command line into words as Python's `shlex.split` does in POSIX mode (what botocore uses for
/// `credential_process`, and for `[profile "name"]` headers): whitespace separates words; single quotes keep
/// everything literally; double quotes keep everything but `\"` and `\\`; outside quotes a backslash takes the next
/// character literally. No variables, globs, pipes or comments: nothing is given to a shell.
package enum ShellWords {
    /// Why a line could not be split.
    package struct SplitError: Error, Equatable {
        package let reason: String
    }

    package static func split(_ line: String) throws(SplitError) -> [String] {
        enum State { case between, word, single, double }
        var words: [String] = []
        var word = ""
        var state = State.between
        var iterator = line.unicodeScalars.makeIterator()
        while let scalar = iterator.next() {
            switch state {
            case .between, .word:
                switch scalar {
                case " ", "\t", "\r", "\n":
                    if state == .word { words.append(word) }
                    word = ""
                    state = .between
                case "'": state = .single
                case "\"": state = .double
                case "\\":
                    guard let next = iterator.next() else { throw SplitError(reason: "no escaped character") }
                    word.unicodeScalars.append(next)
                    state = .word
                default:
                    word.unicodeScalars.append(scalar)
                    state = .word
                }
            case .single:
                if scalar == "'" { state = .word } else { word.unicodeScalars.append(scalar) }
            case .double:
                switch scalar {
                case "\"": state = .word
                case "\\":
                    guard let next = iterator.next() else { throw SplitError(reason: "no closing quotation") }
                    if next != "\"" && next != "\\" { word.unicodeScalars.append("\\") }
                    word.unicodeScalars.append(next)
                default: word.unicodeScalars.append(scalar)
                }
            }
        }
        switch state {
        case .single, .double: throw SplitError(reason: "no closing quotation")
        case .word: words.append(word)
        case .between: break
        }
        return words
    }
}
