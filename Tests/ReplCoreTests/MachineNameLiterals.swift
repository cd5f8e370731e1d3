import ReplCore

/// Tests only: a literal machine name in an expected action (`"repl-ab12cd-1-1"`), parsed as
/// OrbStack's name would be; a literal that is not one of ours stops the test at once.
extension MachineName: ExpressibleByStringLiteral {
    public init(stringLiteral text: String) {
        guard let name = MachineName(parsing: text) else { preconditionFailure("\(text) is not a repl machine name") }
        self = name
    }
}
