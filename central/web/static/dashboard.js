/* Shared by every dashboard page: catalogue, JSON API calls with the session cookie and its
   CSRF token, DOM building from text nodes only, number and time formatting, charts. */
(function () {
  'use strict';

  var catalogue = JSON.parse(document.getElementById('catalogue').textContent);
  var configNode = document.getElementById('page-config');
  var config = configNode ? JSON.parse(configNode.textContent) : {};
  var lang = document.documentElement.lang === 'en' ? 'en' : 'zh';
  var TZ = 'Asia/Shanghai';

  function t(key, params) {
    var text = catalogue[key];
    if (text === undefined) { return key; }
    if (params) {
      text = text.replace(/\{(\w+)\}/g, function (m, name) {
        return params[name] === undefined || params[name] === null ? m : String(params[name]);
      });
    }
    return text;
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split('; ') : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf('=');
      if (parts[i].slice(0, eq) === name) { return decodeURIComponent(parts[i].slice(eq + 1)); }
    }
    return '';
  }

  function ApiError(status, detail) {
    this.status = status;
    this.detail = detail;
    this.message = status + ' ' + detail;
  }
  ApiError.prototype = Object.create(Error.prototype);

  /* fetch the JSON API as the logged-in user; a 401 goes back to the login form */
  function api(path, options) {
    options = options || {};
    var headers = { 'Accept': 'application/json' };
    var init = { method: options.method || 'GET', credentials: 'same-origin', headers: headers };
    if (init.method !== 'GET') {
      headers['X-CSRF-Token'] = cookie('hw_central_csrf');
      if (options.body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(options.body);
      }
    }
    return fetch(path, init).then(function (response) {
      if (response.status === 401) {
        var here = location.pathname + location.search;
        location.assign('/login?next=' + encodeURIComponent(here));
        throw new ApiError(401, 'login required');
      }
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
        if (!response.ok) {
          var detail = data && data.detail !== undefined ? data.detail : text;
          throw new ApiError(response.status,
            typeof detail === 'string' ? detail : JSON.stringify(detail));
        }
        return data;
      });
    });
  }

  /* el('div', {class: 'x', dataset: {hall: 'H1'}}, 'text', child, …): no HTML is parsed */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === undefined || value === null || value === false) { return; }
        if (name === 'dataset') {
          Object.keys(value).forEach(function (k) { node.dataset[k] = value[k]; });
        } else if (name === 'onclick' || name === 'onsubmit' || name === 'onchange') {
          node[name] = value;
        } else if (name === 'text') {
          node.textContent = value;
        } else {
          node.setAttribute(name === 'className' ? 'class' : name, value === true ? '' : value);
        }
      });
    }
    for (var i = 2; i < arguments.length; i++) { append(node, arguments[i]); }
    return node;
  }

  function append(node, child) {
    if (child === undefined || child === null || child === false) { return; }
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  function pct(ratio) {
    if (!ratio || ratio.value === null || ratio.value === undefined) { return '—'; }
    return (ratio.value * 100).toFixed(1) + '%';
  }

  function frac(ratio) {
    if (!ratio || !ratio.denominator) { return ''; }
    return fmtNum(ratio.numerator) + '/' + fmtNum(ratio.denominator);
  }

  function fmtNum(n) {
    return Math.round(n) === n ? String(n) : n.toFixed(1);
  }

  function avg(ratio, digits) {
    if (!ratio || ratio.value === null || ratio.value === undefined) { return '—'; }
    return ratio.value.toFixed(digits === undefined ? 1 : digits);
  }

  /* a rate with its fraction: "92.5% 37/40" as two spans */
  function rate(ratio) {
    var f = frac(ratio);
    return el('span', { class: 'rate' }, el('span', { class: 'rate-value' }, pct(ratio)),
      f ? el('span', { class: 'rate-frac' }, f) : null);
  }

  /* dates read YYYY-MM-DD in every language and browser locale: parts, not a locale's order */
  var timeFormat = new Intl.DateTimeFormat('en-GB', {
    timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit',
    minute: '2-digit', hourCycle: 'h23' });
  var clockFormat = new Intl.DateTimeFormat(lang === 'zh' ? 'zh-CN' : 'en-GB', {
    timeZone: TZ, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

  function fmtTime(iso) {
    if (!iso) { return '—'; }
    var p = {};
    timeFormat.formatToParts(new Date(iso)).forEach(function (part) { p[part.type] = part.value; });
    return p.year + '-' + p.month + '-' + p.day + ' ' + p.hour + ':' + p.minute;
  }
  function fmtClock(date) { return clockFormat.format(date || new Date()); }

  /* the business date (Beijing) of an instant, as YYYY-MM-DD */
  function beijingDate(date) {
    var parts = new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric',
      month: '2-digit', day: '2-digit' }).format(date || new Date());
    return parts;
  }

  function addDays(day, n) {
    var d = new Date(day + 'T00:00:00Z');
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  function notice(text, kind) {
    var node = document.getElementById('notice');
    if (!node) { return; }
    if (!text) { node.hidden = true; node.textContent = ''; return; }
    node.hidden = false;
    node.className = 'notice ' + (kind || 'info');
    node.textContent = text;
  }

  function failure(error) {
    if (error && error.status === 404) {
      return t('common.unavailable', { what: error.detail || '404' });
    }
    return t('common.error', { error: error && error.message ? error.message : String(error) });
  }

  function noData(colspan, text) {
    return el('tr', { class: 'no-data' }, el('td', { colspan: colspan || 1 },
      text || t('common.nodata')));
  }

  /* an ECharts instance that follows its box's size */
  function chart(id) {
    var node = document.getElementById(id);
    if (!node || !window.echarts) { return null; }
    var instance = window.echarts.getInstanceByDom(node) || window.echarts.init(node, null,
      { renderer: 'canvas' });
    if (window.ResizeObserver && !node.dataset.observed) {
      node.dataset.observed = '1';
      new ResizeObserver(function () { instance.resize(); }).observe(node);
    }
    return instance;
  }

  var FONT = '"WenQuanYi Micro Hei", "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif';
  var COLORS = { blue: '#2f6fd6', yellow_light: '#e6b800', red_light: '#e23c3c',
    yellow_card: '#f08c00', red_card: '#b3141c', supervision_letter: '#6a1b9a',
    suspended: '#8a94a6' };

  function query() {
    var out = {};
    new URLSearchParams(location.search).forEach(function (v, k) { out[k] = v; });
    return out;
  }

  // a staff number with the name the hall's setup gives it: 王芳（100231）
  function staffLabel(staff, name) {
    if (!staff) { return '—'; }
    return name ? name + '（' + staff + '）' : staff;
  }

  // a hall by its registered name, the id small beside it and on hover; a hall the registry
  // does not name shows its id alone
  function hallLabel(hall, name) {
    if (!name || name === hall) { return hall; }
    return el('span', { class: 'hall-name', title: hall }, name, ' ',
      el('small', { class: 'hall-code' }, hall));
  }

  function withQuery(path, params) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== '') { q.set(k, params[k]); }
    });
    var s = q.toString();
    return s ? path + '?' + s : path;
  }

  window.HW = { t: t, api: api, el: el, clear: clear, pct: pct, frac: frac, avg: avg,
    staffLabel: staffLabel, hallLabel: hallLabel,
    rate: rate, fmtTime: fmtTime, fmtClock: fmtClock, beijingDate: beijingDate,
    addDays: addDays, notice: notice, failure: failure, noData: noData, chart: chart,
    FONT: FONT, COLORS: COLORS, config: config, lang: lang, query: query,
    withQuery: withQuery, ApiError: ApiError };
})();
