-- answers: Which budget scopes are blocked right now, since when, at what spend?
-- A scope is blocked when its latest signal says block and its window has not ended.
WITH latest AS
(
    SELECT scope, argMax(state, issued_at) AS last_state, max(issued_at) AS since,
           argMax(spend_nusd, issued_at) AS spend, argMax(limit_nusd, issued_at) AS lim,
           argMax(window_end, issued_at) AS w_end
    FROM signals FINAL
    GROUP BY scope
)
SELECT scope, since, spend AS spend_nusd, lim AS limit_nusd, w_end AS window_end
FROM latest
WHERE last_state = 'block' AND w_end > now64(3)
ORDER BY since DESC, scope
