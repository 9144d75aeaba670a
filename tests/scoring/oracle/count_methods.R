# Known answers for the count-aware methods (services/scoring/counts.py), from R `surveillance`.
# Run: Rscript tests/scoring/oracle/count_methods.R tests/scoring/oracle
# Needs Debian r-base-core and r-cran-surveillance (R 4.2, surveillance 1.20.3).
#
# For each seeded series it writes <name>.csv with columns
#   t, count, poisson_upper, poisson_alarm, glrpois_upper, glrpois_alarm, glrpois_value,
#   negbin_upper
# where t is 1-based and every bound covers the buckets from baseline+guard+1 on.
#   poisson: algo.bayes (b = 0, actY = TRUE) on a series whose last `guard` buckets before
#            t are cut out, so its window of w = baseline buckets is the reference with the
#            guard band; checked against qnbinom(1-alpha, S+1/2, n/(n+1)) directly.
#   glrpois: algo.glrpois with mu0 = (reference sum + 1/2)/baseline per bucket, M = window - 1
#            and Mtilde = 0 (windows of 1 to `window` buckets, the scored one included),
#            c.ARL = threshold, ret "cases" (upper) and "value" (statistic).
#   negbin:  qnbinom(1-alpha, size, mu) with the predictive of counts.py: mu = (S+1/2)/n,
#            phi = max(1, var/mean), size = S+1/2 when phi = 1, else mu/(phi(1+1/n)-1).
suppressPackageStartupMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "."
B <- 28; G <- 2; W <- 7; C <- 7; ALPHA <- 0.001

series <- list()
set.seed(20261202)
series$pois_0.2 <- rpois(120, 0.2)
series$pois_1 <- c(rpois(90, 1), rpois(5, 4), rpois(25, 1))
series$pois_5 <- rpois(120, 5)
series$nb2_3 <- c(rnbinom(90, size = 2, mu = 3), rnbinom(4, size = 2, mu = 12), rnbinom(26, size = 2, mu = 3))
series$sparse_0.05 <- c(rpois(60, 0.05), 2, 3, 0, 1, rpois(56, 0.05))
series$zeros <- c(rep(0, 40), 1, 2, 0, 0, 5, rep(0, 15))

ref_of <- function(y, t) y[(t - G - B):(t - G - 1)]

for (name in names(series)) {
  y <- series[[name]]
  n <- length(y)
  first <- B + G + 1
  rng <- first:n
  pu <- rep(NA, n); pa <- rep(NA, n); nu <- rep(NA, n)
  for (t in rng) {
    # algo.bayes reads observed[t-w .. t-1]: hand it the reference followed by the count.
    z <- c(ref_of(y, t), y[t])
    dp <- create.disProg(week = seq_along(z), observed = z, state = rep(0, length(z)))
    r <- algo.bayes(dp, control = list(range = length(z), b = 0, w = B, actY = TRUE, alpha = ALPHA))
    direct <- qnbinom(1 - ALPHA, sum(ref_of(y, t)) + 1/2, B / (B + 1))
    stopifnot(r$upperbound[1] == direct)
    pu[t] <- r$upperbound[1]; pa[t] <- r$alarm[1]
    ref <- ref_of(y, t); S <- sum(ref); mu <- (S + 0.5) / B; m <- S / B
    phi <- if (m > 0) max(1, var(ref) / m) else 1
    size <- if (phi > 1) mu / (phi * (1 + 1 / B) - 1) else S + 0.5
    nu[t] <- qnbinom(1 - ALPHA, size = size, mu = mu)
  }
  mu0 <- sapply(rng, function(t) (sum(ref_of(y, t)) + 0.5) / B)
  dp <- create.disProg(week = 1:n, observed = y, state = rep(0, n))
  cases <- algo.glrpois(dp, control = list(range = rng, c.ARL = C, mu0 = mu0, M = W - 1, Mtilde = 0,
                                           dir = "inc", ret = "cases"))
  value <- algo.glrpois(dp, control = list(range = rng, c.ARL = C, mu0 = mu0, M = W - 1, Mtilde = 0,
                                           dir = "inc", ret = "value"))
  gu <- rep(NA, n); ga <- rep(NA, n); gv <- rep(NA, n)
  gu[rng] <- as.vector(cases$upperbound); ga[rng] <- as.vector(cases$alarm) == 1; gv[rng] <- as.vector(value$upperbound)
  write.csv(data.frame(t = 1:n, count = y, poisson_upper = pu, poisson_alarm = pa,
                       glrpois_upper = gu, glrpois_alarm = ga, glrpois_value = gv,
                       negbin_upper = nu),
            file.path(out, paste0(name, ".csv")), row.names = FALSE, na = "")
}
cat("wrote", length(series), "series to", out, "\n")
