# The pieces scripts/bench/ab and scripts/bench/sockmap share: installing what they need, the
# release build they measure by default, a bounded stop of what they started, and the upstream
# they put behind the proxies (nginx, 1 worker, a 100-byte file) with a one-service table in
# front of it. Sourced (`source scripts/bench/http-lab.bash`) from the checkout's top directory;
# each function says what it writes or prints. `me` (the script's name) prefixes messages.

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

# http_lab_upstream DIR PORT: writes DIR/www/index.html (99 digits, the small answer every
# benchmark here serves) and DIR/nginx/nginx-PORT.conf, an nginx that serves it on 127.0.0.1:PORT
# (1 worker, keepalive without limits, no access log). Start it with
# `nginx -c DIR/nginx/nginx-PORT.conf -p DIR/nginx`.
http_lab_upstream() {
  local dir=$1 port=$2
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
    server { listen 127.0.0.1:$port backlog=4096; root $dir/www; }
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
