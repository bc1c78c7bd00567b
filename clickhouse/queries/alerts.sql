-- answers: Which anomaly alerts fired, on what, with what evidence, and are they resolved?
-- param start DateTime64(3) = -7d
-- param end DateTime64(3) = now
-- param tenant String = ''
-- One row per incident (fingerprint): when it started, when it resolved (NULL: still firing).
SELECT
    fingerprint,
    any(a_detector) AS detector,
    any(a_severity) AS severity,
    any(a_scope) AS scope,
    any(a_tenant) AS tenant_id,
    argMinIf(a_summary, a_issued, a_status = 'firing') AS summary,
    argMinIf(a_observed, a_issued, a_status = 'firing') AS observed,
    argMinIf(a_expected, a_issued, a_status = 'firing') AS expected,
    any(a_unit) AS unit,
    min(a_starts) AS started,
    maxIf(a_ends, a_status = 'resolved') AS resolved
FROM
(
    SELECT fingerprint, detector AS a_detector, severity AS a_severity, scope AS a_scope,
           tenant_id AS a_tenant, summary AS a_summary, issued_at AS a_issued,
           status AS a_status, observed AS a_observed, expected AS a_expected,
           unit AS a_unit, starts_at AS a_starts, ends_at AS a_ends
    FROM alerts FINAL
    WHERE issued_at >= {start:DateTime64(3)} AND issued_at < {end:DateTime64(3)}
      AND ({tenant:String} = '' OR tenant_id = {tenant:String})
)
GROUP BY fingerprint
ORDER BY started, fingerprint
