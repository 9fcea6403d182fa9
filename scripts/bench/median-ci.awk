# A confidence interval of the median, shared by scripts/bench/proxy, scripts/bench/ab,
# scripts/bench/sockmap and scripts/bench/capture (the last three through
# scripts/bench/http-lab.bash).
#
#   sort -g NUMBERS | awk -f scripts/bench/median-ci.awk   →   "LOW HIGH CONFIDENCE"
#
# Input: numbers sorted ascending, one per line. It assumes nothing of their distribution, only
# that they are independent: the interval from the k-th smallest to the k-th largest holds the
# true median with probability 1 − 2·P(Binomial(n, ½) < k). Prints the interval for the largest k
# that keeps that at 95% or more, and the confidence it has, or "NA NA NA" below 6 numbers, where
# no k does. Exact, not the normal approximation, which is too narrow for small n (n = 8: 93%).
{ v[NR] = $1 }
END {
  n = NR; best = 0; tail = 0; term = 0.5 ^ n    # term: P(Binomial(n, ½) = i), from i = 0
  for (k = 1; 2 * k <= n; k++) {
    tail += term                                # now P(Binomial(n, ½) < k)
    if (1 - 2 * tail < 0.95) break
    best = k; confidence = 1 - 2 * tail
    term = term * (n - k + 1) / k
  }
  if (best == 0) print "NA NA NA"; else print v[best], v[n + 1 - best], confidence
}
