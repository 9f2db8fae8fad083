-- Metrics: the Prometheus text format (GET /metrics, warden:metrics())
-- and the gauges pushed to statsd next to the counters.
--
-- Counters are summed over every worker in Rust-owned shared memory
-- (engine:stats()); they start from zero at a full restart and survive
-- `nginx -s reload`.

local concat = table.concat
local format = string.format
local pairs = pairs
local sort = table.sort

local _M = {}


-- name, type, help, value(stats) or { {labels, value}, ... }
local function families(s)
    local blocked = {
        { 'source="denylist"', s.denylisted },
        { 'source="manual"', s.blocked_manual },
        { 'source="auto"', s.blocked_auto },
    }
    local events = {}
    for _, t in ipairs({ "blocked_ip", "rate_limited", "auth_failed",
                         "suspicious", "scan_detected", "capture" }) do
        events[#events + 1] = { 'type="' .. t .. '"', s["events_" .. t] }
    end
    local fams = {
        { "warden_info", "gauge", "Version of lua-resty-warden.",
          { { 'version="' .. s.version .. '"', 1 } } },
        { "warden_requests_checked_total", "counter",
          "Requests decided by check() (lists and blocks).",
          s.passed + s.allowlisted + s.denylisted + s.blocked_manual
          + s.blocked_auto },
        { "warden_requests_allowlisted_total", "counter",
          "Requests let through by the allowlist or whitelist.",
          s.allowlisted },
        { "warden_requests_blocked_total", "counter",
          "Requests from a denylisted or blocked client, by source.",
          blocked },
        { "warden_requests_skipped_total", "counter",
          "Requests to a whitelisted path or a disabled site.",
          s.policy_skipped },
        { "warden_site_denied_total", "counter",
          "Requests refused by a site's allowed_ips or blocked_paths.",
          s.site_denied },
        { "warden_site_rate_limited_total", "counter",
          "Requests refused by a site's rate_limit.", s.site_rate_limited },
        { "warden_protected_route_auth_total", "counter",
          "Requests to protected routes, by outcome.",
          { { 'result="passed"', s.auth_passed },
            { 'result="failed"', s.auth_failed } } },
        { "warden_events_total", "counter", "Security events, by type.",
          events },
        { "warden_blocked_addresses", "gauge",
          "Addresses and networks blocked now (blocks and denylist).",
          s.blocks + s.denylist },
        { "warden_shm_free_bytes", "gauge",
          "Free space in the lua_shared_dict.",
          { { 'dict="' .. s.dict .. '"', s.dict_free_bytes } } },
        { "warden_shm_capacity_bytes", "gauge",
          "Size of the lua_shared_dict.",
          { { 'dict="' .. s.dict .. '"', s.dict_capacity_bytes } } },
        { "warden_lookup_errors_total", "counter",
          "Reputation lookups that failed (iprepd).", s.lookup_errors },
        { "warden_bad_address_total", "counter",
          "Checks given an address that could not be parsed.",
          s.bad_address },
        { "warden_bad_forwarded_total", "counter",
          "Requests with an unparsable X-Forwarded-For element.",
          s.bad_forwarded },
        { "warden_dict_full_total", "counter",
          "Blocks refused because the shared dict was full.", s.dict_full },
        { "warden_counters_refused_total", "counter",
          "Offence and rate-limit counters not created, to keep the shared "
          .. "dict's last pages for blocks.", s.counters_refused },
        { "warden_journal_applied_total", "counter",
          "Block journal entries applied by workers.", s.journal_applied },
        { "warden_full_syncs_total", "counter",
          "Full re-reads of the blocks by workers.", s.full_syncs },
        { "warden_policy_loads_total", "counter",
          "Policies compiled by workers.", s.policy_loads },
        { "warden_events_recorded_total", "counter",
          "Events written to the events ring.", s.events_recorded },
        { "warden_events_capacity", "gauge",
          "Events the ring holds at most.", s.events_capacity },
    }
    if s.state_file then
        fams[#fams + 1] = { "warden_state_writes_total", "counter",
            "Writes of the state file, by result.",
            { { 'result="ok"', s.state_saves },
              { 'result="error"', s.state_save_errors } } }
        fams[#fams + 1] = { "warden_state_restored_total", "counter",
            "Blocks restored from the state file at start.",
            s.state_restored }
    end
    if s.fleet_node then
        local node = 'node="' .. s.fleet_node .. '"'
        fams[#fams + 1] = { "warden_fleet_connected", "gauge",
            "1 while this node's agent is connected to Redis.",
            { { node, s.fleet_connected and 1 or 0 } } }
        fams[#fams + 1] = { "warden_fleet_queued", "gauge",
            "Local changes not yet sent to Redis.", s.fleet_queued }
        fams[#fams + 1] = { "warden_fleet_changes_total", "counter",
            "Block changes sent to and received from the fleet.",
            { { 'direction="sent"', s.fleet_sent },
              { 'direction="received"', s.fleet_received } } }
        fams[#fams + 1] = { "warden_fleet_resyncs_total", "counter",
            "Full reconciliations with Redis.", s.fleet_resyncs }
        fams[#fams + 1] = { "warden_fleet_outages_total", "counter",
            "Times Redis became unreachable.", s.fleet_outages }
    end
    if s.detector_capacity then
        local more = {
            { "warden_detector_observed_total", "counter",
              "Finished requests counted by the detector.",
              s.detector_observed },
            { "warden_detector_trips_total", "counter",
              "Detector rules tripped.", s.detector_trips },
            { "warden_detector_auto_blocks_total", "counter",
              "Clients blocked by the detector.", s.auto_blocks },
            { "warden_detector_evictions_total", "counter",
              "Live clients evicted from the detector's table.",
              s.detector_evictions },
            { "warden_detector_tracked_clients", "gauge",
              "Clients the detector tracks now.", s.detector_tracked },
            { "warden_detector_capacity_clients", "gauge",
              "Clients the detector's table holds at most.",
              s.detector_capacity },
        }
        for i = 1, #more do
            fams[#fams + 1] = more[i]
        end
    end
    return fams
end


local function num(v)
    v = tonumber(v) or 0
    if v == math.floor(v) and v < 2^53 and v > -2^53 then
        return format("%d", v)
    end
    return format("%.17g", v)
end


--- render(stats) -> the Prometheus text exposition (format 0.0.4).
-- stats: warden:stats() plus { version, dict, denylist }.
function _M.render(s)
    local out = {}
    for _, f in ipairs(families(s)) do
        local name, kind, help, v = f[1], f[2], f[3], f[4]
        out[#out + 1] = "# HELP " .. name .. " " .. help
        out[#out + 1] = "# TYPE " .. name .. " " .. kind
        if type(v) == "table" then
            for i = 1, #v do
                out[#out + 1] = name .. "{" .. v[i][1] .. "} " .. num(v[i][2])
            end
        else
            out[#out + 1] = name .. " " .. num(v)
        end
    end
    out[#out + 1] = ""
    return concat(out, "\n")
end


--- gauges(stats) -> { name = value }: what statsd gets next to the
-- counters (which are pushed as deltas).
function _M.gauges(s)
    local g = {
        blocked_addresses = s.blocks + s.denylist,
        shm_free_bytes = s.dict_free_bytes,
        detector_tracked_clients = s.detector_tracked,
    }
    local names = {}
    for k in pairs(g) do
        names[#names + 1] = k
    end
    sort(names)
    return g, names
end


return _M
