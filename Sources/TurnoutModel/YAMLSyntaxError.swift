/// Why a text is not YAML, and where: libyaml's own words ("while parsing a flow mapping: did
/// not find expected ',' or '}'"), or the composer's ("found undefined alias 'base'").
struct YAMLSyntaxError: Error, Sendable, Equatable {
    /// 1-based line and column of the problem.
    var line: Int
    var column: Int
    var message: String
}
