/* Drill-down: hall → department → window → staff → case over a date range
   (GET /api/v1/drilldown, GET /api/v1/cases). The path lives in the address bar. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var LEVELS = ['hall', 'department', 'window', 'staff'];
  var COLUMNS = [
    ['satisfaction_rate', 'rate'], ['evaluations', 'count'], ['bad_reviews', 'sum'],
    ['evaluation_rate', 'rate'], ['on_time_rate', 'rate'], ['avg_handling_days', 'avg'],
    ['overdue_count', 'int'], ['same_day_rate', 'rate'], ['avg_wait_minutes', 'avg'],
    ['no_show_rate', 'rate'], ['staffed_rate', 'rate']
  ];

  var state = H.query();
  var today = H.beijingDate();
  state.last = state.last || today;
  state.first = state.first || H.addDays(state.last, -29);

  function cell(ind, column) {
    var name = column[0], kind = column[1];
    if (!ind) { return '—'; }
    if (kind === 'rate') { return H.rate(ind[name]); }
    if (kind === 'avg') { return H.avg(ind[name]); }
    if (kind === 'count') { return ind.satisfaction_rate.denominator; }
    if (kind === 'sum') {
      return Object.keys(ind.bad_reviews).reduce(function (n, k) { return n + ind.bad_reviews[k]; }, 0);
    }
    return ind[name];
  }

  function label(level, value, named) {
    if (level === 'window') { return t('window.n', { n: value }); }
    if (level === 'hall') { return H.hallLabel(value, named && named.hall_name); }
    if (level === 'staff') { return H.staffLabel(value, named && named.staff_name); }
    return value;
  }

  // named: the drill-down's answer, once it came, for the names of the hall and staff member
  function renderCrumbs(named) {
    var nav = H.clear(document.getElementById('crumbs'));
    var path = { first: state.first, last: state.last };
    nav.appendChild(el('a', { href: H.withQuery('/analysis', path) }, t('analysis.path.all')));
    LEVELS.forEach(function (level) {
      if (!state[level]) { return; }
      path[level] = state[level];
      nav.appendChild(el('span', { class: 'sep' }, '›'));
      nav.appendChild(el('a', { href: H.withQuery('/analysis', path), class: 'crumb-' + level },
        label(level, state[level], named)));
    });
  }

  function renderKpis(total) {
    var box = H.clear(document.getElementById('kpis'));
    [['satisfaction_rate', 'rate'], ['evaluation_rate', 'rate'], ['on_time_rate', 'rate'],
      ['avg_handling_days', 'avg'], ['overdue_count', 'int'], ['staffed_rate', 'rate']
    ].forEach(function (c) {
      var value = !total ? '—' : c[1] === 'rate' ? H.pct(total[c[0]])
        : c[1] === 'avg' ? H.avg(total[c[0]]) : total[c[0]];
      box.appendChild(el('div', { class: 'kpi', id: 'kpi-' + c[0] },
        el('div', { class: 'kpi-label' }, t('ind.' + c[0])),
        el('div', { class: 'kpi-value' }, value),
        el('div', { class: 'kpi-sub' }, total && c[1] === 'rate' ? H.frac(total[c[0]]) : ''),
        c[0] === 'staffed_rate' && total ? coverage(total) : null));
    });
  }

  // 在岗率 counts only opening time the hall's gateway reported: say how much that was
  function coverage(ind) {
    var cover = ind.staffed_coverage;
    if (!cover) { return null; }
    return el('div', { class: 'kpi-sub', id: 'staffed-coverage',
      title: t('analysis.staffed_cover.title') },
    t('analysis.staffed_cover', { covered: Math.round(cover.numerator),
      opening: Math.round(cover.denominator) }));
  }

  function groupName(g, level) {
    return label(level, g[level] || '', g);
  }

  // a chart axis takes text: a hall by its name alone
  function groupText(g, level) {
    return level === 'hall' ? g.hall_name || g.hall : groupName(g, level);
  }

  function renderGroups(data) {
    var table = H.clear(document.getElementById('groups'));
    var level = data.level;
    document.getElementById('groups-title').textContent = t('analysis.groups.' + level);
    if (level === 'case') { return; }
    var head = el('tr', null, el('th', null, t('common.rank')), el('th', null, t('common.' + level)),
      COLUMNS.map(function (c) {
        return el('th', c[0] === 'staffed_rate' ? { title: t('analysis.staffed_cover.title') }
          : null, t('ind.' + c[0]));
      }));
    var gaming = level === 'staff';  // confirmed 异常线索 only: open and dismissed never count
    if (gaming) { head.appendChild(el('th', null, t('analysis.confirmed_anomalies'))); }
    table.appendChild(el('thead', null, head));
    var body = el('tbody');
    if (!data.groups.length) { body.appendChild(H.noData(COLUMNS.length + (gaming ? 3 : 2))); }
    data.groups.forEach(function (g) {
      var next = Object.assign({}, state);
      next[level] = g[level];
      var link = el('a', { href: H.withQuery('/analysis', next), class: 'drill',
        dataset: { level: level, value: g[level] } }, groupName(g, level));
      body.appendChild(el('tr', null,
        el('td', { class: 'rank' }, g.satisfaction_rank === null ? '—' : g.satisfaction_rank),
        el('td', null, link),
        COLUMNS.map(function (c) { return el('td', { class: 'num' }, cell(g.indicators, c)); }),
        gaming ? el('td', { class: 'num confirmed-anomalies' }, g.confirmed_anomalies
          ? el('a', { href: H.withQuery('/anomalies', { status: 'confirmed', hall: g.hall,
            staff: g.staff }) }, String(g.confirmed_anomalies)) : '0') : null));
    });
    table.appendChild(body);
  }

  function renderTrend(data) {
    var chart = H.chart('chart-trend');
    if (!chart) { return; }
    var days = data.trend.map(function (d) { return d.day.slice(5); });
    function series(name) {
      return data.trend.map(function (d) {
        var r = d.indicators && d.indicators[name];
        return r && r.value !== null ? Math.round(r.value * 1000) / 10 : null;
      });
    }
    var textStyle = { fontFamily: H.FONT, fontSize: 13 };
    chart.setOption({
      textStyle: textStyle, animation: false,
      tooltip: { trigger: 'axis' },
      legend: { top: 0, textStyle: textStyle },
      grid: { left: 48, right: 48, top: 40, bottom: 32 },
      xAxis: { type: 'category', data: days, axisLabel: textStyle },
      yAxis: [{ type: 'value', min: 0, max: 100, axisLabel: { formatter: '{value}%' } },
        { type: 'value', minInterval: 1, splitLine: { show: false } }],
      series: [
        { name: t('ind.satisfaction_rate'), type: 'line', connectNulls: false,
          data: series('satisfaction_rate'), itemStyle: { color: '#2f9e44' } },
        { name: t('ind.evaluation_rate'), type: 'line', data: series('evaluation_rate'),
          itemStyle: { color: '#2f6fd6' } },
        { name: t('ind.on_time_rate'), type: 'line', data: series('on_time_rate'),
          itemStyle: { color: '#f08c00' } },
        { name: t('ind.evaluations'), type: 'bar', yAxisIndex: 1, itemStyle: { color: '#c5d3ea' },
          data: data.trend.map(function (d) {
            return d.indicators ? d.indicators.satisfaction_rate.denominator : 0; }) }
      ]
    }, true);
  }

  function renderRanking(data) {
    var chart = H.chart('chart-ranking');
    if (!chart) { return; }
    var ranked = data.groups.filter(function (g) { return g.satisfaction_rank !== null; })
      .sort(function (a, b) { return b.satisfaction_rank - a.satisfaction_rank; });
    var level = data.level;
    chart.setOption({
      textStyle: { fontFamily: H.FONT, fontSize: 13 }, animation: false,
      tooltip: { trigger: 'axis' },
      grid: { left: 110, right: 40, top: 16, bottom: 24 },
      xAxis: { type: 'value', min: 0, max: 100, axisLabel: { formatter: '{value}%' } },
      yAxis: { type: 'category', data: ranked.map(function (g) { return groupText(g, level); }),
        axisLabel: { fontFamily: H.FONT } },
      series: [{ type: 'bar', name: t('ind.satisfaction_rate'), itemStyle: { color: '#2f9e44' },
        label: { show: true, position: 'right', formatter: '{c}%' },
        data: ranked.map(function (g) {
          return Math.round(g.indicators.satisfaction_rate.value * 1000) / 10; }) }]
    }, true);
  }

  function renderCases(items) {
    var panel = document.getElementById('cases-panel');
    var table = H.clear(document.getElementById('cases'));
    panel.hidden = false;
    table.appendChild(el('thead', null, el('tr', null,
      ['common.case', 'case.item', 'common.department', 'common.window', 'common.staff',
        'case.accepted_at', 'case.deadline', 'case.stage', 'case.status'].map(function (k) {
        return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!items.length) { body.appendChild(H.noData(9)); }
    items.forEach(function (c) {
      var stage = c.ladder && c.ladder.stage;
      body.appendChild(el('tr', c.openOverdue ? { class: 'open-overdue',
        title: t('analysis.open_overdue') } : null,
        el('td', null, el('a', { href: '/cases/' + encodeURIComponent(c.case_no),
          class: 'case-link' }, c.case_no)),
        el('td', null, c.item_name), el('td', null, c.department),
        el('td', null, c.window === null ? '—' : c.window), el('td', null, H.staffLabel(c.staff, c.staff_name)),
        el('td', null, H.fmtTime(c.accepted_at)),
        el('td', null, c.ladder && c.ladder.deadline ? c.ladder.deadline : '—'),
        el('td', null, stage ? el('span', { class: 'stage stage-' + stage },
          c.ladder.label || stage) : '—'),
        el('td', null, t('status.' + c.status))));
    });
    table.appendChild(body);
  }

  // Cases accepted in the range, and first every open overdue case whatever its acceptance
  // date: a case overdue since last month must not drop out of this month's list.
  function loadCases() {
    if (!state.hall) { document.getElementById('cases-panel').hidden = true; return; }
    var scope = { hall: state.hall, department: state.department, window: state.window,
      staff: state.staff, limit: 200 };
    var inRange = Object.assign({ accepted_from: state.first, accepted_to: state.last }, scope);
    var overdue = Object.assign({ open: true, overdue: true }, scope);
    Promise.all([H.api(H.withQuery('/api/v1/cases', overdue)),
      H.api(H.withQuery('/api/v1/cases', inRange))]).then(function (pages) {
      var seen = {};
      var items = pages[0].items.map(function (c) {
        seen[c.case_no] = true;
        return Object.assign({ openOverdue: true }, c);
      });
      renderCases(items.concat(pages[1].items.filter(function (c) { return !seen[c.case_no]; })));
    }).catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function load() {
    renderCrumbs();
    document.getElementById('first').value = state.first;
    document.getElementById('last').value = state.last;
    var params = { first: state.first, last: state.last, hall: state.hall,
      department: state.department, window: state.window, staff: state.staff };
    H.api(H.withQuery('/api/v1/drilldown', params)).then(function (data) {
      renderCrumbs(data);
      renderKpis(data.total);
      renderGroups(data);
      renderTrend(data);
      renderRanking(data);
      H.notice(data.correlated ? '' : t('common.nodata.correlation'), 'info');
      document.body.dataset.loaded = '1';
    }).catch(function (error) { H.notice(H.failure(error), 'error'); });
    loadCases();
    loadComplaints();
  }

  /* complaints tied to the hall or staff member in view (GET /api/v1/complaints), linked */
  function loadComplaints() {
    var box = document.getElementById('analysis-complaints');
    if (!box || !state.hall) { return; }
    var filter = { hall: state.hall, staff: state.staff };
    H.api(H.withQuery('/api/v1/complaints', filter)).then(function (page) {
      H.clear(box).appendChild(el('a', { id: 'analysis-complaint-count',
        href: H.withQuery('/complaints', { state: '', hall: state.hall, staff: state.staff }) },
        t('complaints.count', { n: page.count })));
      box.hidden = false;
    }).catch(function () { box.hidden = true; });
  }

  document.getElementById('range-form').onsubmit = function (event) {
    event.preventDefault();
    state.first = document.getElementById('first').value || state.first;
    state.last = document.getElementById('last').value || state.last;
    location.assign(H.withQuery('/analysis', state));
  };
  load();
})();
