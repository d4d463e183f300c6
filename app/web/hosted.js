// flinks-bff: the hosted Connect page a native app opens (app/api/hosted.py).
//
// The app opens {BFF}/v1/connect/hosted/{flow_id}#ticket=… in the system browser (or, with
// ?webview=true, in a web view of its own). This script:
//   1. takes the ticket out of the address bar and this history entry, before anything else
//      (the fragment never reached a server);
//   2. opens the page: POST …/open {ticket}, same origin; the answer is Connect's iframe URL
//      (a token minted for this page only) and Connect's origin, and the BFF sets this page's
//      HttpOnly cookie; a reload opens again with the cookie alone;
//   3. waits for Connect's REDIRECT message, from Connect's origin and its frame only, and hands
//      the loginId to the BFF: POST …/complete, with the cookie; a Connect that ignores
//      jsRedirect navigates this page back to itself with ?loginId=…, which is handled alike;
//   4. goes where the answer says: the app's return URL with flow_id and handoff_code.
// The loginId is never shown, stored or logged, and never put in a URL. No Referer is sent.
(function () {
  "use strict";

  var LOGIN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  var FLOW_ID = /^[A-Za-z0-9_-]{22}$/;
  var TICKET = /^[A-Za-z0-9_-]{43}$/;
  // The same pattern as INSTITUTION_ID_PATTERN in app/flows/records.py.
  var INSTITUTION_ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

  var fragment = new URLSearchParams(window.location.hash.slice(1));
  var query = new URLSearchParams(window.location.search);
  var webview = query.get("webview") === "true";
  window.history.replaceState(
    null, "", window.location.pathname + (webview ? "?webview=true" : "")
  );

  var page = document.getElementById("hosted");
  var title = document.getElementById("hosted-title");
  var detail = document.getElementById("hosted-detail");
  var retry = document.getElementById("hosted-retry");
  var back = document.getElementById("hosted-back");
  var frame = document.getElementById("hosted-connect");
  var flowId = page.getAttribute("data-flow-id") || "";
  var base = "/v1/connect/hosted/" + encodeURIComponent(flowId);
  var connectOrigin = null;
  var completing = false;
  var retryAction = null;

  function show(state, heading, words) {
    page.setAttribute("data-state", state);
    title.textContent = heading;
    detail.textContent = words;
    retry.hidden = true;
  }

  function offerRetry(action) {
    retryAction = action;
    retry.hidden = false;
    retry.focus();
  }

  function post(path, body) {
    return fetch(base + path, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(
        function (data) { return { response: response, data: data }; },
        function () { return { response: response, data: null }; }
      );
    });
  }

  function refused() {
    frame.hidden = true;
    frame.removeAttribute("src");
    show(
      "error",
      "This link cannot go on.",
      "It was already used, has expired, or was opened somewhere else. Nothing was linked. " +
        "Go back to the app and start again."
    );
  }

  function unreachable(action) {
    show(
      "error",
      "We could not reach our server.",
      "Check the connection and try again."
    );
    offerRetry(action);
  }

  function open() {
    var ticket = fragment.get("ticket");
    var body = ticket !== null && TICKET.test(ticket) ? { ticket: ticket } : {};
    show("busy", "Opening Flinks Connect…", "One moment.");
    post("/open", body).then(function (result) {
      var data = result.data;
      if (result.response.ok && data && typeof data.iframe_url === "string") {
        connectOrigin = data.connect_origin;
        // Retrying must not resend a ticket that was used: the page has its cookie now.
        fragment = new URLSearchParams();
        frame.src = data.iframe_url;
        frame.hidden = false;
        show("connect", "Link your bank account", "Sign in to your bank with Flinks Connect.");
      } else if (result.response.status >= 400 && result.response.status < 500) {
        refused();
      } else {
        unreachable(open);
      }
    }, function () { unreachable(open); });
  }

  // The loginId of Connect's REDIRECT: top-level in newer versions, else inside `url`
  // (flinks-contract.md 12.1 #4).
  function loginIdOf(data) {
    if (typeof data.loginId === "string" && LOGIN_ID.test(data.loginId)) return data.loginId;
    if (typeof data.url !== "string") return null;
    try {
      var values = new URL(data.url).searchParams.getAll("loginId");
      return values.length === 1 && LOGIN_ID.test(values[0]) ? values[0] : null;
    } catch (e) {
      return null;
    }
  }

  function complete(loginId, institution) {
    if (completing) return;
    completing = true;
    frame.hidden = true;
    show("busy", "Finishing the link…", "Going back to the app in a moment.");
    var body = { login_id: loginId };
    if (institution !== null && INSTITUTION_ID.test(institution)) body.institution = institution;
    post("/complete", body).then(function (result) {
      var data = result.data;
      if (result.response.ok && data && typeof data.location === "string") {
        leave(data.location);
      } else if (result.response.status >= 400 && result.response.status < 500) {
        refused();
      } else {
        failed();
      }
    }, failed);

    function failed() {
      // Not confirmed either way; the loginId is still in this page's memory, so try again.
      completing = false;
      unreachable(function () { complete(loginId, institution); });
    }
  }

  // Web-view mode: the host's web view also hears where the page goes (the navigation itself
  // is the same as in the system browser, which is what a host should intercept).
  function tellHost(location) {
    var message = { source: "flinks-bff", step: "RETURN", location: location };
    try {
      if (window.ReactNativeWebView) {
        window.ReactNativeWebView.postMessage(JSON.stringify(message));
      } else if (window.webkit && window.webkit.messageHandlers &&
          window.webkit.messageHandlers.flinksBff) {
        window.webkit.messageHandlers.flinksBff.postMessage(message);
      } else if (window.FlinksBff && window.FlinksBff.postMessage) {
        window.FlinksBff.postMessage(JSON.stringify(message));
      }
    } catch (e) {
      // The navigation below still takes the page back to the app.
    }
  }

  function leave(location) {
    if (webview) tellHost(location);
    show("done", "Going back to the app…", "If nothing happens, use the button below.");
    back.href = location;
    back.hidden = false;
    window.location.replace(location);
  }

  window.addEventListener("message", function (event) {
    if (connectOrigin === null || event.origin !== connectOrigin) return;
    if (event.source !== frame.contentWindow) return;
    var data = event.data;
    if (typeof data === "string") {
      try { data = JSON.parse(data); } catch (e) { return; }
    }
    if (!data || typeof data !== "object" || data.step !== "REDIRECT") return;
    var loginId = loginIdOf(data);
    if (loginId === null) return;
    complete(loginId, typeof data.institution === "string" ? data.institution : null);
  });

  retry.addEventListener("click", function () {
    if (retryAction) retryAction();
  });

  if (!FLOW_ID.test(flowId)) {
    show(
      "error",
      "We could not find this link attempt.",
      "Nothing was linked. Go back to the app and start again."
    );
    return;
  }
  var returned = query.getAll("loginId");
  if (returned.length === 1 && LOGIN_ID.test(returned[0])) {
    // Connect ignored jsRedirect and brought the loginId here: this page's cookie binds it.
    var institutions = query.getAll("institution");
    complete(returned[0], institutions.length === 1 ? institutions[0] : null);
    return;
  }
  open();
})();
