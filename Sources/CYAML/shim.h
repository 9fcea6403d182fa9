/* libyaml (Debian's libyaml-dev, 0.2.5): the YAML 1.1 parser under the table decoder.
 *
 * TurnoutModel reads libyaml's event stream and composes its own nodes (YAMLComposer), so the
 * binary links only this C parser: a YAML library in Swift would bring full Foundation (its
 * scalar resolver uses NSRegularExpression), and with it ICU and CoreFoundation, which cost
 * every turnout process about 6 MiB of resident memory and the binary about 52 MB (measured:
 * 21.3 → 15.2 MiB at start, 89 → 37 MB). */
#ifndef TURNOUT_CYAML_SHIM_H
#define TURNOUT_CYAML_SHIM_H
#include <yaml.h>
#endif
