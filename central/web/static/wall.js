/* The 大屏: one snapshot of every hall in scope (GET /api/v1/wall/snapshot), the ticker of new
   events, and a drill-down that rotates through the worst halls. Live over server-sent events
   (/api/v1/wall/stream); when the stream drops the page polls (ticker every 3 s, snapshot every
   30 s) and reconnects with a growing, jittered backoff, so a central restart is not met by
   every screen at once. The snapshot is fetched only when its version changes (ETag), at most
   once per few seconds. The page itself is never reloaded. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el, lang = H.lang;
  var TICKER_POLL_MS = 3000;
  var SNAPSHOT_POLL_MS = 30000;
  var SNAPSHOT_GAP_MS = 4000;  // the least time between two snapshot requests
  var ROTATE_MS = 20000;
  var BACKOFF_MS = [2000, 5000, 10000, 20000, 40000, 60000];
  var TICKS_KEPT = 60;
  var STATES = ['red', 'yellow', 'offline', 'blue', 'green', 'idle'];  // worst first
  // the tree's layouts, most detailed first; squares as large as the panel allows
  var TREE_MODES = [['full'], ['compact'], ['dots', 1.4], ['dots', 1], ['dots', 0.8],
    ['regions', 1.4], ['regions', 1], ['regions', 0.6], ['counts']];

  var snapshot = null;
  var etag = null;
  var ticks = [];       // newest first
  var seen = {};        // tick ids already shown
  var cursor = null;    // the ticker's position for ?after=
  var drillIndex = 0;

  // ------------------------------------------------------------------------ requests

  function AuthLost() {}

  var stopped = false;

  /* a revoked screen says so and stops asking; an expired login goes to the login form */
  function authLost() {
    if (stopped) { return; }
    stopped = true;
    if (source) { source.close(); }
    stopPolling();
    clearTimeout(retryTimer);
    if (!H.config.screen) {
      location.assign('/login?next=' + encodeURIComponent('/wall'));
      return;
    }
    document.body.dataset.stream = 'down';
    var banner = document.getElementById('wall-banner');
    banner.hidden = false;
    banner.className = 'wall-banner';
    banner.textContent = t('wall.revoked');
  }

  function getJson(path, tag) {
    var headers = { Accept: 'application/json' };
    if (tag) { headers['If-None-Match'] = tag; }
    return fetch(path, { credentials: 'same-origin', headers: headers, cache: 'no-store' })
      .then(function (response) {
        if (response.status === 401) {
          authLost();
          throw new AuthLost();
        }
        if (response.status === 304) { return null; }
        if (!response.ok) { throw new H.ApiError(response.status, response.statusText); }
        return response.json().then(function (data) {
          return { data: data, etag: response.headers.get('ETag') };
        });
      });
  }

  // ------------------------------------------------------------------------ formatting

  // rates come as percents (0–100, one decimal); null: no data
  function pct(value) {
    return value === null || value === undefined ? '—' : value.toFixed(1) + '%';
  }

  function whole(value) {  // a narrow column's rate: 96%
    return value === null || value === undefined ? '—' : Math.round(value) + '%';
  }

  function clock(iso) {
    return H.fmtClock(iso ? new Date(iso) : new Date());
  }

  function remPx() {
    return parseFloat(getComputedStyle(document.documentElement).fontSize) || 12;
  }

  /* drop the children of a box that reach below its bottom edge: a panel never clips half a
     row, and nothing hangs outside the screen */
  function fit(box, items) {
    var list = Array.prototype.slice.call(items);
    // removing rows can let a shrunk sibling box grow again: repeat until nothing moves
    for (var round = 0; round < 4 && list.length; round++) {
      var bottom = box.getBoundingClientRect().bottom + 0.5;
      var keep = list.length;
      while (keep > 0 && list[keep - 1].getBoundingClientRect().bottom > bottom) { keep--; }
      if (keep === list.length) { return; }
      list.slice(keep).forEach(function (item) { item.parentNode.removeChild(item); });
      list = list.slice(0, keep);
    }
  }

  // ------------------------------------------------------------------------ KPIs

  /* big counts in 万 as read aloud in a 监察室: 122382 → 12.2万 */
  function count(n) {
    if (typeof n !== 'number' || n < 100000) { return n; }
    return lang === 'zh' ? (n / 10000).toFixed(1) + '万' : (n / 1000).toFixed(0) + 'k';
  }

  function kpi(id, label, value, kind) {
    return el('div', { class: 'wall-kpi ' + (kind || ''), id: id, title: String(value) },
      el('div', { class: 'wall-kpi-label' }, label),
      el('div', { class: 'wall-kpi-value' }, count(value)));
  }

  /* a number never cut: a smaller font when it is wider than its box */
  function shrinkToFit(node) {
    for (var scale = 0.85; node.scrollWidth > node.clientWidth + 1 && scale > 0.4; scale -= 0.15) {
      node.style.fontSize = scale * 2.6 + 'rem';
    }
  }

  function counted(n, kind) { return n ? kind : 'zero'; }

  function renderKpis(totals) {
    var box = H.clear(document.getElementById('wall-kpis'));
    box.appendChild(kpi('kpi-halls', t('wall.kpi.halls'), totals.halls));
    box.appendChild(kpi('kpi-offline', t('wall.kpi.offline'), totals.offline,
      totals.offline ? 'red' : 'good'));
    box.appendChild(kpi('kpi-red-lights', t('light.red_light'), totals.lights.red,
      counted(totals.lights.red, 'red')));
    box.appendChild(kpi('kpi-yellow-lights', t('light.yellow_light'), totals.lights.yellow,
      counted(totals.lights.yellow, 'yellow')));
    box.appendChild(kpi('kpi-blue-lights', t('light.blue'), totals.lights.blue, 'blue'));
    box.appendChild(kpi('kpi-red-cards', t('light.red_card'), totals.cards.red,
      counted(totals.cards.red, 'red')));
    box.appendChild(kpi('kpi-yellow-cards', t('light.yellow_card'), totals.cards.yellow,
      counted(totals.cards.yellow, 'yellow')));
    box.appendChild(kpi('kpi-letters', t('light.supervision_letter'), totals.letters,
      counted(totals.letters, 'purple')));
    box.appendChild(kpi('kpi-evaluations', t('wall.kpi.evaluations'), totals.evaluations_today));
    box.appendChild(kpi('kpi-bad', t('wall.kpi.bad'), totals.bad_today,
      counted(totals.bad_today, 'red')));
    box.appendChild(kpi('kpi-satisfaction', t('wall.kpi.satisfaction'),
      pct(totals.satisfaction_today), 'good'));
    box.appendChild(kpi('kpi-ontime', t('wall.kpi.ontime'), pct(totals.ontime_rate_30d), 'good'));
    box.querySelectorAll('.wall-kpi-value').forEach(shrinkToFit);
  }

  // ------------------------------------------------------------------------ the tree

  /* groups of the tree, in tree order: every hall with children heads one, its leaf children
     as tiles; at depth ``flat`` a group takes its whole subtree as tiles and nothing deeper
     heads a group (one group per city when there are thousands of halls); halls alone at the
     top share a group without a head */
  function groupsOf(halls, flat) {
    var byId = {}, children = {};
    halls.forEach(function (h) { byId[h.hall_id] = h; children[h.hall_id] = []; });
    halls.forEach(function (h) {
      if (h.parent && byId[h.parent]) { children[h.parent].push(h); }
    });
    var depth = {};
    halls.forEach(function (h) {
      depth[h.hall_id] = h.parent && byId[h.parent] ? depth[h.parent] + 1 : 0;
    });
    var groups = [], loose = [];
    halls.forEach(function (h) {
      var d = depth[h.hall_id];
      if (children[h.hall_id].length && d <= flat) {
        var below = subtree(h.hall_id, children);
        groups.push({ head: h, depth: d, below: below, tiles: d === flat ? below :
          children[h.hall_id].filter(function (c) { return !children[c.hall_id].length; }) });
      } else if (d === 0) {
        loose.push(h);
      }
    });
    if (loose.length) { groups.push({ head: null, depth: 0, tiles: loose, below: loose }); }
    return groups;
  }

  function subtree(id, children) {
    var out = [];
    (function walk(hallId) {
      children[hallId].forEach(function (c) { out.push(c); walk(c.hall_id); });
    })(id);
    return out;
  }

  function stateCounts(halls) {
    var n = {};
    STATES.forEach(function (s) { n[s] = 0; });
    halls.forEach(function (h) { n[h.state] = (n[h.state] || 0) + 1; });
    return n;
  }

  function countChips(halls) {
    var n = stateCounts(halls);
    return el('span', { class: 'tree-counts' }, STATES.filter(function (s) { return n[s]; })
      .map(function (s) {
        return el('span', { title: t('wall.state.' + s) },
          el('i', { class: 'wall-dot st-' + s }), n[s]);
      }));
  }

  function facts(h) {
    var parts = [];
    if (h.lights.red) { parts.push(t('light.red_light') + h.lights.red); }
    if (h.lights.yellow) { parts.push(t('light.yellow_light') + h.lights.yellow); }
    if (h.cards.red) { parts.push(t('light.red_card') + h.cards.red); }
    if (h.cards.yellow) { parts.push(t('light.yellow_card') + h.cards.yellow); }
    if (h.letters) { parts.push(t('light.supervision_letter') + h.letters); }
    if (h.satisfaction_today !== null && h.satisfaction_today !== undefined) {
      parts.push(pct(h.satisfaction_today));
    }
    return parts.join(' ') || t('wall.state.' + h.state);
  }

  function tile(h) {
    return el('div', { class: 'tree-tile st-' + h.state, title: h.name + ' · ' +
      t('wall.state.' + h.state), dataset: { hall: h.hall_id, state: h.state } },
      el('div', { class: 'name' }, h.name),
      el('div', { class: 'facts' }, facts(h)));
  }

  function renderTree(halls, mode, square) {
    var box = H.clear(document.getElementById('wall-tree'));
    box.className = 'wall-tree ' + mode;
    box.style.setProperty('--square', (square || 1) + 'rem');
    var flat = mode === 'regions' || mode === 'counts' ? 1 : Infinity;
    groupsOf(halls, flat).forEach(function (g) {
      box.appendChild(el('div', { class: 'tree-group', style: 'padding-left:' + g.depth * 0.8 + 'rem',
        dataset: g.head ? { hall: g.head.hall_id } : null },
        el('div', { class: 'tree-group-head' },
          g.head ? el('span', { class: 'tree-own st-' + g.head.state,
            title: g.head.name + ' · ' + t('wall.state.' + g.head.state) }, g.head.name) : null,
          countChips(g.below)),
        g.tiles.length ? el('div', { class: 'tree-tiles' }, g.tiles.map(tile)) : null));
    });
    return box;
  }

  /* the most detailed mode whose tree fits its panel: names and facts for a few dozen
     halls, names, then coloured squares, then counts per level for thousands */
  // the least area (rem²) one hall takes in a layout: layouts that cannot hold every hall are
  // not even drawn (2,000 full tiles take long to lay out)
  var TILE_AREA = { full: 9.5 * 2.6, compact: 6 * 1.3 };

  function mayHold(box, mode, square, n) {
    var rem = remPx();
    var per = TILE_AREA[mode] || (square ? (square + 0.12) * (square + 0.12) : 0);
    return per * n <= box.clientWidth * box.clientHeight / (rem * rem);
  }

  function drawTree(halls) {
    // the legend first: the tree gets the room it leaves
    document.getElementById('tree-count').textContent = t('wall.tree.count', { n: halls.length });
    var n = stateCounts(halls);
    H.clear(document.getElementById('tree-legend')).appendChild(el('span', null,
      STATES.map(function (s) {
        return el('span', { class: 'legend-' + s }, el('i', { class: 'st-' + s }),
          t('wall.state.' + s), el('span', { class: 'n' }, n[s]), ' ');
      })));
    var box = document.getElementById('wall-tree');
    for (var i = 0; i < TREE_MODES.length; i++) {
      var mode = TREE_MODES[i];
      if (i < TREE_MODES.length - 1 && !mayHold(box, mode[0], mode[1], halls.length)) { continue; }
      box = renderTree(halls, mode[0], mode[1]);
      if (box.scrollHeight <= box.clientHeight + 1) { break; }
    }
    fit(box, box.children);
  }


  // ------------------------------------------------------------------------ trends

  function drawTrends(trends) {
    var chart = H.chart('wall-trend');
    if (!chart) { return; }
    var px = remPx();
    var ink = '#c9d6f2';
    var text = { fontFamily: H.FONT, fontSize: Math.round(px * 1.0), color: ink };
    chart.setOption({
      textStyle: text, animation: false,
      legend: { top: 0, right: 0, textStyle: text, itemWidth: px * 2, itemHeight: px },
      tooltip: { trigger: 'axis', valueFormatter: function (v) {
        return v === null || v === undefined ? '—' : v + '%'; } },
      grid: { left: px * 3.8, right: px * 1.2, top: px * 2.4, bottom: px * 2.2 },
      xAxis: { type: 'category', data: trends.days.map(function (d) { return d.slice(5); }),
        axisLabel: text, axisLine: { lineStyle: { color: '#5c7cb0' } } },
      yAxis: { type: 'value', max: 100, scale: true,
        axisLabel: { fontFamily: H.FONT, fontSize: text.fontSize, color: ink,
          formatter: '{value}%' },
        splitLine: { lineStyle: { color: '#1c3157' } } },
      series: [
        { name: t('wall.trend.satisfaction'), type: 'line', connectNulls: false,
          symbolSize: px * 0.5, lineStyle: { width: px * 0.25 }, itemStyle: { color: '#4dabf7' },
          data: trends.satisfaction },
        { name: t('wall.trend.ontime'), type: 'line', connectNulls: false,
          symbolSize: px * 0.5, lineStyle: { width: px * 0.25 }, itemStyle: { color: '#ffd43b' },
          data: trends.ontime }
      ]
    }, true);
    chart.resize();
  }

  // ------------------------------------------------------------------------ 红黑榜

  function rankList(kind, rows) {
    return el('div', { class: 'rank-list ' + kind },
      el('h3', null, t('wall.ranks.' + kind)),
      el('ol', null, rows.length ? rows.map(function (r, i) {
        var own = r.name === r.hall_name;
        return el('li', { dataset: { id: r.id }, title: own ? r.name : r.name + ' · ' + r.hall_name },
          el('span', { class: 'rank-no' }, i + 1),
          el('span', { class: 'rank-name' }, r.name, own ? null : el('small', null, r.hall_name)),
          el('span', { class: 'rank-value' }, pct(r.value)));
      }) : el('li', { class: 'rank-none' }, el('span'), el('span', { class: 'rank-name' },
        t('common.nodata')))));
  }

  function drawRanks(rankings) {
    var box = H.clear(document.getElementById('wall-ranks'));
    ['halls', 'departments', 'windows'].forEach(function (part) {
      var lists = rankings[part] || { red: [], black: [] };
      box.appendChild(el('section', { class: 'rank-block', id: 'ranks-' + part,
        'aria-label': t('wall.ranks.' + part) },
        rankList('red', lists.red), rankList('black', lists.black)));
    });
    // each list titled with its part and what it ranks by: 红榜 · 部门（按时办结率）
    box.querySelectorAll('.rank-block').forEach(function (block, i) {
      var lists = rankings[['halls', 'departments', 'windows'][i]] || { red: [], black: [] };
      var first = lists.red[0] || lists.black[0];
      var part = t('wall.ranks.' + ['halls', 'departments', 'windows'][i]) +
        (first ? t('wall.basis', { basis: t('wall.trend.' + first.basis) }) : '');
      block.querySelectorAll('h3').forEach(function (h) { h.textContent += ' · ' + part; });
      block.querySelectorAll('ol').forEach(function (ol) { fit(ol, ol.children); });
    });
  }

  // ------------------------------------------------------------------------ ticker

  function addTicks(items, fresh) {
    var added = 0;
    items.forEach(function (tick) {
      if (seen[tick.id]) { return; }
      seen[tick.id] = true;
      tick.fresh = fresh;
      ticks.push(tick);
      added++;
    });
    if (!added) { return; }
    ticks.sort(function (a, b) {
      return a.at < b.at ? 1 : a.at > b.at ? -1 : (a.id < b.id ? 1 : -1);
    });
    ticks.slice(TICKS_KEPT).forEach(function (old) { delete seen[old.id]; });
    ticks = ticks.slice(0, TICKS_KEPT);
    drawTicker();
  }

  function withoutHall(tick) {  // the hall's name is shown in bold already
    var text = tick.text || '';
    return text.indexOf(tick.hall_name) === 0 ? text.slice(tick.hall_name.length).trim() : text;
  }

  function drawTicker() {
    var list = H.clear(document.getElementById('wall-ticker'));
    if (!ticks.length) {
      list.appendChild(el('li', { class: 'wall-empty' }, t('wall.ticker.empty')));
    }
    ticks.forEach(function (tick) {
      list.appendChild(el('li', {
        class: 'tick' + (tick.fresh ? ' new' : '') + (tick.history ? ' history' : ''),
        dataset: { id: tick.id, kind: tick.kind, hall: tick.hall_id } },
        el('span', { class: 'tick-time' }, clock(tick.at)),
        el('span', { class: 'tick-kind tick-' + tick.kind }, t('wall.tick.' + tick.kind)),
        el('span', { class: 'tick-body', title: tick.text },
          el('span', { class: 'tick-hall' }, tick.hall_name), withoutHall(tick))));
      tick.fresh = false;
    });
    fit(list, list.children);
    document.body.dataset.ticks = String(ticks.length);
  }

  // ------------------------------------------------------------------------ drill-down

  function bySeverity(rows) {  // red first, the order of STATES; stable otherwise
    return rows.map(function (row, i) { return [STATES.indexOf(row.state), i, row]; })
      .sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; })
      .map(function (x) { return x[2]; });
  }

  function stateBadge(state) {
    return el('span', { class: 'drill-state st-' + state }, t('wall.state.' + state));
  }

  function drawDrill(hall, position) {
    var box = H.clear(document.getElementById('wall-drill'));
    document.getElementById('drill-pos').textContent = position;
    if (!hall) {
      box.appendChild(el('p', { class: 'wall-empty' }, t('wall.drill.none')));
      return;
    }
    box.dataset.hall = hall.hall_id;
    var departments = el('table', { class: 'drill-table' },
      el('thead', null, el('tr', null, el('th', null, t('wall.drill.departments')),
        el('th', null, t('light.red_light')), el('th', null, t('light.yellow_light')),
        el('th', null, t('light.red_card')), el('th', null, t('wall.drill.satisfaction')),
        el('th', null, t('wall.drill.ontime')))),
      el('tbody', null, bySeverity(hall.departments).map(function (d) {
        return el('tr', { dataset: { department: d.id } },
          el('td', { title: d.name }, el('i', { class: 'wall-dot st-' + d.state }), d.name),
          el('td', null, d.lights.red), el('td', null, d.lights.yellow),
          el('td', null, d.cards.red), el('td', null, whole(d.satisfaction_30d)),
          el('td', null, whole(d.ontime_30d)));
      })));
    var windows = el('div', { class: 'drill-windows' }, hall.windows.map(function (w) {
      var label = t('wall.drill.window', { n: w.window }) + ' ' +
        t('wall.drill.today', { n: w.evaluations_today, bad: w.bad_today }) +
        (w.staff_name ? ' ' + w.staff_name : '');
      return el('div', { class: 'drill-window st-' + w.state, dataset: { window: w.window },
        title: label }, label);
    }));
    var overdue = el('ol', { class: 'drill-cases' }, hall.cases_overdue.map(function (c) {
      return el('li', { title: c.case_no + ' ' + c.item },
        el('i', { class: 'wall-dot light-' + c.light, style: 'background:' +
          (H.COLORS[c.light] || '#888') }), c.case_no + ' ' + c.item);
    }));
    box.appendChild(el('div', { class: 'drill-head' },
      el('span', { class: 'drill-name' }, hall.name), stateBadge(hall.state)));
    var tableBox = el('div', { class: 'drill-part' }, departments);
    var casesBox = el('div', { class: 'drill-part' }, el('h3', null, t('wall.drill.overdue')),
      overdue);
    box.appendChild(el('div', { class: 'drill-body' },
      el('div', { class: 'drill-col' }, tableBox, hall.cases_overdue.length ? casesBox : null),
      el('div', { class: 'drill-col' }, el('h3', null, t('wall.drill.windows')), windows)));
    fit(tableBox, departments.querySelectorAll('tbody tr'));
    fit(overdue, overdue.children);
    fit(windows, windows.children);
  }

  var drillShown = null;  // the last hall drawn, redrawn as it is on a resize

  function rotate() {
    var worst = snapshot ? snapshot.worst : [];
    if (!worst.length) { drillShown = null; drawDrill(null, ''); return; }
    var index = drillIndex % worst.length;
    drillIndex = index + 1;
    getJson('/api/v1/wall/hall/' + encodeURIComponent(worst[index])).then(function (got) {
      drillShown = { hall: got.data, position: (index + 1) + '/' + worst.length };
      drawDrill(drillShown.hall, drillShown.position);
    }).catch(failed);
  }

  // ------------------------------------------------------------------------ snapshot

  function draw() {
    if (!snapshot) { return; }
    document.getElementById('wall-scope').textContent = snapshot.scope.label || '';
    renderKpis(snapshot.totals);
    drawTree(snapshot.halls);
    drawTrends(snapshot.trends);
    drawRanks(snapshot.rankings);
    drawTicker();
    if (drillShown) { drawDrill(drillShown.hall, drillShown.position); }
    document.body.dataset.drawnFor = innerWidth + 'x' + innerHeight;
  }

  var snapshotTimer = null, snapshotAt = 0, snapshotBusy = false;

  /* one snapshot request at a time, at most one per SNAPSHOT_GAP_MS, only if changed */
  function wantSnapshot() {
    if (snapshotBusy || snapshotTimer) { return; }
    var wait = Math.max(0, snapshotAt + SNAPSHOT_GAP_MS - Date.now());
    snapshotTimer = setTimeout(function () {
      snapshotTimer = null;
      snapshotBusy = true;
      snapshotAt = Date.now();
      getJson('/api/v1/wall/snapshot', etag).then(function (got) {
        reached();
        if (got) {
          var first = !snapshot;
          snapshot = got.data;
          etag = got.etag;
          draw();
          document.getElementById('wall-updated').textContent =
            t('wall.updated', { time: clock(snapshot.generated_at) });
          if (first) { rotate(); }
          document.body.dataset.loaded = '1';
        }
      }).catch(failed).then(function () { snapshotBusy = false; });
    }, wait);
  }

  // ------------------------------------------------------------------------ live

  var source = null, attempts = 0, retryAt = 0, retryTimer = null;
  var polling = null, lastPollFailed = false;

  function setLink(mode) {
    document.body.dataset.stream = mode;
    document.getElementById('wall-link').textContent =
      mode === 'live' ? t('wall.live') : t('wall.polling');
    showBanner();
  }

  function showBanner() {
    if (stopped) { return; }
    var banner = document.getElementById('wall-banner');
    var mode = document.body.dataset.stream;
    if (mode === 'live' || mode === 'connecting') { banner.hidden = true; return; }
    var seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    banner.hidden = false;
    banner.className = 'wall-banner' + (lastPollFailed ? '' : ' degraded');
    banner.textContent = lastPollFailed ? t('wall.offline', { seconds: seconds }) :
      t('wall.degraded', { seconds: seconds });
  }

  function failed(error) {
    if (error instanceof AuthLost) { return; }
    lastPollFailed = true;
    if (document.body.dataset.stream === 'live') { return; }
    document.body.dataset.stream = 'down';
    showBanner();
  }

  function reached() {
    lastPollFailed = false;
    if (document.body.dataset.stream === 'down') { document.body.dataset.stream = 'polling'; }
    showBanner();
  }

  function pollTicker() {
    var path = '/api/v1/wall/ticker?limit=50' + (cursor ? '&after=' + encodeURIComponent(cursor) : '');
    return getJson(path).then(function (got) {
      reached();
      cursor = got.data.cursor || cursor;
      addTicks(got.data.items, true);
    }).catch(failed);
  }

  function startPolling() {
    if (polling) { return; }
    pollTicker();  // at once: what the stream would have brought
    polling = {
      ticker: setInterval(pollTicker, TICKER_POLL_MS),
      snapshot: setInterval(wantSnapshot, SNAPSHOT_POLL_MS),
      banner: setInterval(showBanner, 1000)
    };
  }

  function stopPolling() {
    if (!polling) { return; }
    clearInterval(polling.ticker);
    clearInterval(polling.snapshot);
    clearInterval(polling.banner);
    polling = null;
  }

  function connect() {
    retryTimer = null;
    if (stopped) { return; }
    if (!window.EventSource) { setLink('polling'); startPolling(); return; }
    source = new EventSource('/api/v1/wall/stream');
    source.addEventListener('open', function () {
      attempts = 0;
      stopPolling();
      setLink('live');
      pollTicker();  // the ticker so far, or what happened while the stream was down
    });
    source.addEventListener('tick', function (event) {
      var tick = JSON.parse(event.data);
      cursor = tick.id;  // a tick's id is a cursor: a catch-up starts after it
      addTicks([tick], true);
    });
    source.addEventListener('snapshot', function (event) {
      var version = JSON.parse(event.data).version;
      if (!snapshot || version !== snapshot.version) { wantSnapshot(); }
    });
    source.addEventListener('error', function () {
      // the browser would retry on its own, all screens together; back off instead
      source.close();
      source = null;
      var base = BACKOFF_MS[Math.min(attempts, BACKOFF_MS.length - 1)];
      attempts++;
      var delay = Math.round(base * (0.75 + Math.random() * 0.5));
      retryAt = Date.now() + delay;
      setLink(lastPollFailed ? 'down' : 'polling');
      startPolling();
      if (!retryTimer) { retryTimer = setTimeout(connect, delay); }
    });
  }

  // ------------------------------------------------------------------------ start

  function tickClock() {
    document.getElementById('wall-clock').textContent = H.beijingDate() + ' ' + H.fmtClock();
  }

  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(draw, 200);  // the same data, laid out again
  });

  tickClock();
  setInterval(tickClock, 1000);
  setInterval(rotate, ROTATE_MS);
  drawTicker();
  wantSnapshot();
  connect();
})();
