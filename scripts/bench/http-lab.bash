# The pieces scripts/bench/ab, scripts/bench/sockmap and scripts/bench/capture share: installing
# what they need, the release build they measure by default, a bounded stop of what they started,
# the upstream they put behind the proxies (nginx, 1 worker, a 100-byte file) with a one-service
# table and an HAProxy in front of it, the NAT redirect that moves the clients between proxies,
# the wait for a first answer, one wrk measurement as a row, the rotating rounds of them and the
# table of such rows, and the BPF lab (a cgroup, the compiler, counters, their removal).
# Sourced (`source scripts/bench/http-lab.bash`) from the checkout's top directory; each function
# says what it writes or prints. `me` (the script's name) prefixes messages.

# http_lab_install PACKAGE…: the Debian packages not yet installed, with apt-get (an update only
# when the first attempt fails, as on a fresh machine whose package lists are stale).
http_lab_install() {
  local package missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  echo "$me: installing ${missing[*]} (apt-get)" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    DEBIAN_FRONTEND=noninteractive apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
  fi
}

# http_lab_release_turnout: builds this checkout in release (the benchmarks' scratch path,
# .build-bench) and prints the binary's path.
http_lab_release_turnout() {
  export PATH=/opt/swift/usr/bin:$PATH
  echo "$me: building this checkout (release, --scratch-path .build-bench)" >&2
  swift build -c release --static-swift-stdlib --scratch-path .build-bench --product turnout >&2
  echo "$(swift build -c release --static-swift-stdlib --scratch-path .build-bench --show-bin-path)/turnout"
}

# http_lab_check_turnout BIN: BIN runs and has `turnout proxy`, or the script stops here.
http_lab_check_turnout() {
  [[ -x $1 ]] || { echo "$me: $1 is not an executable" >&2; exit 2; }
  [[ $("$1" proxy --help 2>/dev/null || true) == *'USAGE: turnout proxy'* ]] ||
    { echo "$me: $1 has no \`turnout proxy\`" >&2; exit 2; }
}

# http_lab_stop PID…: SIGTERM, then SIGKILL for what has not ended 5 s later, and reaps them.
# Bounded, so that a cleanup always gets to the namespace (and cgroup) after it.
http_lab_stop() {
  local pid deadline=$((SECONDS + 5))
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

# http_lab_upstream DIR PORT [ADDRESS]: writes DIR/www/index.html (99 digits, the small answer
# every benchmark here serves) and DIR/nginx/nginx-PORT.conf, an nginx that serves it on
# ADDRESS:PORT (default 127.0.0.1; 1 worker, keepalive without limits, no access log). Start it
# with `nginx -c DIR/nginx/nginx-PORT.conf -p DIR/nginx`.
http_lab_upstream() {
  local dir=$1 port=$2 address=${3:-127.0.0.1}
  mkdir -p "$dir/www" "$dir/nginx"
  [[ -f $dir/www/index.html ]] || printf '%099d' 0 >"$dir/www/index.html"
  cat >"$dir/nginx/nginx-$port.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx/nginx-$port.pid;
error_log $dir/nginx/error-$port.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server { listen $address:$port backlog=4096; root $dir/www; }
}
EOF
}

# http_lab_table VIP PORT: prints a turnout table with one service, VIP:80 to 127.0.0.1:PORT.
http_lab_table() {
  cat <<EOF
services:
  - name: bench/upstream
    addresses: [$1]
    ports:
      - {name: http, port: 80, targetPort: $2}
    endpoints:
      - {address: 127.0.0.1}
EOF
}

# http_lab_median FILE: the median of FILE's numbers (one a line, sorted ascending) as "1.234",
# or "none" for no numbers. Its interval is scripts/bench/median-ci.awk's.
http_lab_median() {
  awk '{ v[NR] = $1 } END { if (NR) printf "%.3f\n", (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2; else print "none" }' "$1"
}

# http_lab_interval FILE: the interval of the median of FILE's sorted numbers, from
# scripts/bench/median-ci.awk (exact, at least 95%), as "1.200–1.300 (95.9%)", or "—" below 6.
http_lab_interval() {
  awk -f scripts/bench/median-ci.awk "$1" |
    awk '$1 == "NA" { print "—"; next } { printf "%.3f–%.3f (%.1f%%)\n", $1, $2, 100 * $3 }'
}

# http_lab_nat_redirect NAMESPACE TABLE HOOK MATCH PORT: in one transaction, the nat chain HOOK
# (output or prerouting) of `table ip TABLE` in NAMESPACE holds one rule, MATCH redirected to
# PORT; the table is created the first time. How the benchmarks move their clients from one
# proxy to another.
http_lab_nat_redirect() {
  ip netns exec "$1" nft -f - <<RULES
table ip $2 {
  chain $3 {
    type nat hook $3 priority -100; policy accept;
  }
}
flush chain ip $2 $3
add rule ip $2 $3 $4 redirect to :$5
RULES
}

# http_lab_await NAME LOG URL COMMAND…: COMMAND curl URL answers with the 99-byte file within
# 10 s, or the script stops here, naming NAME and showing the end of its LOG.
http_lab_await() {
  local name=$1 log=$2 url=$3 deadline=$((SECONDS + 10)) body=""
  shift 3
  until body=$("$@" curl -fsS --max-time 1 "$url" 2>/dev/null) && ((${#body} == 99)); do
    ((SECONDS < deadline)) || { echo "$me: $name did not answer: $(tail -c 400 "$log")" >&2; exit 1; }
    sleep 0.2
  done
}

# http_lab_alive NAME PID LOG: PID still runs, or the script stops here, naming NAME and showing
# the end of its LOG (a proxy that exited would otherwise be measured as costing nothing).
http_lab_alive() {
  kill -0 "$2" 2>/dev/null || { echo "$me: $1 exited: $(tail -c 400 "$3")" >&2; exit 1; }
}

# http_lab_haproxy_config THREADS LISTEN_PORT UPSTREAM_PORT [LISTEN_ADDRESS]: prints an HAProxy
# 2.6 `mode tcp` configuration without splice, LISTEN_ADDRESS (default 127.0.0.1):LISTEN_PORT to
# 127.0.0.1:UPSTREAM_PORT.
http_lab_haproxy_config() {
  cat <<CONFIG
global
    nbthread $1
    maxconn 4000
    nosplice
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
listen bench
    bind ${4:-127.0.0.1}:$2
    server upstream 127.0.0.1:$3
CONFIG
}

# http_lab_measure ROUND SIDE PROXY_PID COUNTERS -- COMMAND…: runs COMMAND (a `wrk --latency`,
# under `timeout 20` and /usr/bin/time) and prints one row: "ROUND SIDE requests/s proxy_µs
# clients_µs machine_µs errors p99_ms" (CPU per request: the proxy PID's, wrk's, the whole
# machine's from /proc/stat), then by how much each number the shell function COUNTERS prints
# (space-separated) changed. Prints nothing, and names the side, when wrk gave no result.
http_lab_measure() {
  local round=$1 side=$2
  shift 2
  http_lab_sample "$@"
  awk -v me="$me" -v round="$round" -v side="$side" -v ticks="$http_lab_proxy_ticks" -v machine="$http_lab_machine_ticks" \
      -v hz="$(getconf CLK_TCK)" -v s0="$http_lab_counters_before" -v s1="$http_lab_counters_after" '
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { n = $1 }
    /^cpu / { wrk = $2 + $3 }
    $1 == "99%" { p99 = $2 + 0; if ($2 ~ /us$/) p99 /= 1000; else if ($2 ~ /[0-9]s$/) p99 *= 1000 }
    /Socket errors:|Non-2xx/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) errors += $i + 0 }
    END {
      if (!(n > 0 && rps > 0 && wrk != "")) { printf "%s: round %d, %s: wrk gave no result\n", me, round, side > "/dev/stderr"; exit }
      printf "%d %s %s %.4f %.4f %.4f %d %.3f", round, side, rps, ticks / hz * 1e6 / n, wrk * 1e6 / n, machine / hz * 1e6 / n, errors, p99
      k = split(s0, a, " "); split(s1, b, " ")
      for (i = 1; i <= k; i++) printf " %.0f", b[i] - a[i]
      printf "\n" }' <<<"$http_lab_output"
}

# http_lab_sample PROXY_PID COUNTERS -- COMMAND…: runs COMMAND under `timeout 20` and
# /usr/bin/time (its last line of output: "cpu USER SYSTEM") and sets what a measurement's row
# is made of: http_lab_output (COMMAND's output, stderr included), http_lab_proxy_ticks and
# http_lab_machine_ticks (CPU ticks of PROXY_PID and of the whole machine, from /proc/stat,
# during the run), http_lab_counters_before and _after (what the shell function COUNTERS printed).
http_lab_sample() {
  local pid=$1 counters=$2 c0 c1 m0 m1
  shift 3
  c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  m0=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)
  http_lab_counters_before=$("$counters")
  http_lab_output=$({ /usr/bin/time -f 'cpu %U %S' timeout 20 "$@"; } 2>&1) || true
  # A proxy that ended during the run has no stat left; not an error here, so that the caller's
  # check after the run (`alive`) names it and its output.
  c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || c1=$c0
  m1=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)
  http_lab_counters_after=$("$counters")
  http_lab_proxy_ticks=$((c1 - c0)) http_lab_machine_ticks=$((m1 - m0))
}

# http_lab_ratios ROWS COLUMN SIDE REFERENCE: SIDE ÷ REFERENCE of COLUMN in each round (column 1)
# of http_lab_measure's rows in the file ROWS that measured both sides, one a line, sorted (a
# side whose wrk failed printed no row, and its round is left out).
http_lab_ratios() {
  awk -v c="$2" -v s="$3" -v r="$4" '{ v[$1, $2] = $c; seen[$1] = 1 }
    END { for (k in seen) if ((k, s) in v && (k, r) in v && v[k, r] > 0) print v[k, s] / v[k, r] }' "$1" | sort -g
}

# http_lab_rounds ROUNDS SIDE…: calls the caller's `measure ROUND SIDE` for every side in each
# round, each round starting one side later, so that no side is always first or always after
# the same one.
http_lab_rounds() {
  local rounds=$1 round i
  shift
  for ((round = 1; round <= rounds; round++)); do
    for ((i = 0; i < $#; i++)); do
      measure "$round" "${@:(i + round) % $# + 1:1}"
    done
  done
}

# http_lab_report ROWS REFERENCE SECOND SIDE… -- COUNTER_NAME…: the Markdown table of
# http_lab_measure's rows (or rows in its columns: `http_lab_rate_name` and `http_lab_cost_name`,
# when set, name the rate and the CPU columns' unit instead of requests/s and µs/request, and
# `http_lab_rate_format` the rate's printf format instead of %.0f) in the
# file ROWS, a line per SIDE: medians over the rounds it measured,
# and ratios to the sides REFERENCE and SECOND (the median of the per-round ratios of the rounds
# that measured both, with a 95% interval of the median); the counters summed, one column each.
http_lab_report() {
  local rows=$1 reference=$2 second=$3 sides=() names=() side name measured scratch
  shift 3
  while (($#)) && [[ $1 != -- ]]; do sides+=("$1"); shift; done
  (($#)) && shift
  names=("$@")
  scratch=$(mktemp)
  ratio_cell() {  # ratio_cell COLUMN SIDE REF: "1.234×, 1.200–1.300 (95.9%)", or "—"
    [[ $2 == "$3" ]] && { printf '—'; return 0; }
    http_lab_ratios "$rows" "$1" "$2" "$3" >"$scratch"
    [[ -s $scratch ]] || { printf '—'; return 0; }
    printf '%s×, %s' "$(http_lab_median "$scratch")" "$(http_lab_interval "$scratch")"
  }
  column_median() {  # column_median COLUMN SIDE
    awk -v s="$2" -v c="$1" '$2 == s { print $c }' "$rows" | sort -g >"$scratch"
    http_lab_median "$scratch"
  }
  local rate=${http_lab_rate_name:-requests/s} cost=${http_lab_cost_name:-µs/request}
  printf '| side | rounds | %s | ÷ %s | ÷ %s | p99 ms | p99 ÷ %s | proxy %s | clients %s | machine %s | machine ÷ %s | client errors |' \
    "$rate" "$reference" "$second" "$reference" "$cost" "$cost" "$cost" "$reference"
  for name in "${names[@]}"; do printf ' %s |' "$name"; done
  printf '\n|---|---:|---:|---|---|---:|---|---:|---:|---:|---|---:|'
  for name in "${names[@]}"; do printf -- '---:|'; done
  printf '\n'
  for side in "${sides[@]}"; do
    measured=$(awk -v s="$side" '$2 == s' "$rows" | wc -l)
    if ((measured == 0)); then
      printf '| %s | 0 | — | — | — | — | — | — | — | — | — | — |' "$side"
      for name in "${names[@]}"; do printf ' — |'; done
      printf '\n'
      continue
    fi
    printf "| %s | %d | ${http_lab_rate_format:-%.0f} | %s | %s | %.2f | %s | %.2f | %.2f | %.2f | %s |" "$side" "$measured" \
      "$(column_median 3 "$side")" "$(ratio_cell 3 "$side" "$reference")" "$(ratio_cell 3 "$side" "$second")" \
      "$(column_median 8 "$side")" "$(ratio_cell 8 "$side" "$reference")" \
      "$(column_median 4 "$side")" "$(column_median 5 "$side")" "$(column_median 6 "$side")" "$(ratio_cell 6 "$side" "$reference")"
    # Sums with %.0f, not %d: mawk prints integers from 2^31 on in exponent form.
    awk -v s="$side" -v k="$((${#names[@]} + 1))" '$2 == s { for (i = 7; i <= 7 + k; i++) if (i != 8) t[i] += $i }
      END { for (i = 7; i <= 7 + k; i++) if (i != 8) printf " %.0f |", t[i]; printf "\n" }' "$rows"
  done
  rm -f "$scratch"
}

# The BPF lab (scripts/bench/sockmap and scripts/bench/capture): a cgroup (v2) of the script's own
# for the clients and proxies a program is attached to, a compiler for the programs, and their
# removal. http_lab_bpf_setup sets these; http_lab_bpf_teardown undoes what it did.
http_lab_cgroup="" http_lab_in_cgroup="" http_lab_clang="" http_lab_own_cgroup_mount="" http_lab_own_bpf_mount=0

# http_lab_bpf_setup NAME WORKDIR: installs bpftool, libbpf-dev, gcc and a clang with the BPF
# target when missing (the Swift toolchain's clang has it); finds cgroup v2 (/sys/fs/cgroup,
# /sys/fs/cgroup/unified, or mounts one) and bpffs (mounts it when absent); creates the cgroup
# NAME; writes WORKDIR/in-cgroup, which runs a program inside it as the same PID (exec), so that
# $! of `"$http_lab_in_cgroup" PROGRAM … &` is PROGRAM's (its CPU is read, it is stopped by PID).
http_lab_bpf_setup() {
  local name=$1 work=$2 candidate root=""
  http_lab_install bpftool libbpf-dev gcc
  http_lab_clang=/opt/swift/usr/bin/clang
  [[ -x $http_lab_clang ]] || http_lab_clang=$(command -v clang || true)
  if ! { [[ -n $http_lab_clang ]] && "$http_lab_clang" --print-targets 2>/dev/null | grep -qw bpf; }; then
    http_lab_install clang
    http_lab_clang=$(command -v clang)
  fi
  for candidate in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [[ $(stat -f -c %T "$candidate" 2>/dev/null) == cgroup2fs ]] && { root=$candidate; break; }
  done
  if [[ -z $root ]]; then
    http_lab_own_cgroup_mount=$(mktemp -d /tmp/turnout-cgroup2.XXXXXX)
    mount -t cgroup2 none "$http_lab_own_cgroup_mount" || { echo "$me: cannot mount cgroup v2" >&2; exit 1; }
    root=$http_lab_own_cgroup_mount
  fi
  if [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null) != bpf_fs ]]; then
    mount -t bpf bpf /sys/fs/bpf
    http_lab_own_bpf_mount=1
  fi
  http_lab_cgroup="$root/$name"
  mkdir "$http_lab_cgroup"
  cat >"$work/in-cgroup" <<WRAPPER
#!/bin/sh
echo \$\$ >"$http_lab_cgroup/cgroup.procs" || { echo "in-cgroup: cannot join $http_lab_cgroup" >&2; exit 1; }
exec "\$@"
WRAPPER
  chmod +x "$work/in-cgroup"
  http_lab_in_cgroup="$work/in-cgroup"
}

# http_lab_hex_le32 N: N as four bytes, little-endian, as `bpftool map update … hex` takes a
# 32-bit key or value field on this (x86, little-endian) machine.
http_lab_hex_le32() {
  printf '%02x %02x %02x %02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255))
}

# http_lab_bpf_counters MAP: the values of a pinned array map of counters, space-separated (the
# COUNTERS function http_lab_measure takes).
http_lab_bpf_counters() {
  bpftool map dump pinned "$1" | awk '/"value"/ { gsub(/[^0-9]/, "", $2); printf "%s ", $2 }'
}

# http_lab_bpf_compile SOURCE OBJECT: a BPF object from a C source, with the setup's clang.
http_lab_bpf_compile() {
  "$http_lab_clang" -O2 -g -target bpf -Wall -I"/usr/include/$(gcc -dumpmachine)" -c "$1" -o "$2"
}

# http_lab_bpf_teardown: removes the cgroup (its programs detached first by the caller) and
# unmounts what http_lab_bpf_setup mounted. Says so when the cgroup cannot go.
http_lab_bpf_teardown() {
  if [[ -n $http_lab_cgroup && -d $http_lab_cgroup ]]; then
    rmdir "$http_lab_cgroup" 2>/dev/null || echo "$me: the cgroup $http_lab_cgroup is left behind (a process still in it?)" >&2
  fi
  ((http_lab_own_bpf_mount)) && { umount /sys/fs/bpf 2>/dev/null || true; }
  if [[ -n $http_lab_own_cgroup_mount ]]; then
    umount "$http_lab_own_cgroup_mount" 2>/dev/null || true
    rmdir "$http_lab_own_cgroup_mount" 2>/dev/null || true
  fi
  return 0
}
