import Testing
import TurnoutModel

@Suite("JSON written by turnout (/stats, /config, --format json)")
struct JSONValueTests {
    @Test("a value → compact JSON with sorted keys", arguments: [
        (JSONValue.object(["b": 1, "a": [true, nil, "x"], "c": ["d": 2.5]]), #"{"a":[true,null,"x"],"b":1,"c":{"d":2.5}}"#),
        (.string("quote \" backslash \\ newline \n tab \t bell \u{7} é"), #""quote \" backslash \\ newline \n tab \t bell \u0007 é""#),
        (.number(.infinity), "null"),
        (.number(.nan), "null"),
        (JSONValue(UInt64.max), "9223372036854775807"),
        (JSONValue(-3 as Int), "-3"),
        (.array([]), "[]"),
        (.object([:]), "{}"),
    ])
    func compact(_ value: JSONValue, _ text: String) {
        #expect(value.text() == text)
    }

    @Test("pretty → two spaces a level and \"key\" : value")
    func pretty() {
        let value: JSONValue = ["io": "uring", "upstreams": [["active": 0]], "services": [:]]
        #expect(value.text(pretty: true) == """
            {
              "io" : "uring",
              "services" : {},
              "upstreams" : [
                {
                  "active" : 0
                }
              ]
            }
            """)
    }
}
