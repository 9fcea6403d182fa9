import ArgumentParser

/// The `turnout` command: the root that holds every subcommand.
struct TurnoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turnout",
        abstract: "Transparent interception for a service mesh: service NAT rules, capture rules and a splice proxy.",
        discussion: """
        Examples:
          turnout plan -f rules/canary.yaml                 # the nftables rules apply would install
          turnout plan -f rules/canary.yaml --format iptables
          turnout trace -f rules/canary.yaml --to 10.96.0.20:80
          sudo turnout apply -f rules/canary.yaml           # install: one atomic nf_tables transaction
          sudo turnout status -f rules/canary.yaml          # installed vs the table
          sudo turnout flush                                # remove Turnout's rules only

        Exit status: 0 ok, 1 runtime failure, 2 bad input (the table, a flag or an argument).
        """,
        subcommands: [PlanCommand.self, TraceCommand.self, ApplyCommand.self, FlushCommand.self, StatusCommand.self, InitCommand.self, ProxyCommand.self, PublishCommand.self]
    )
}
