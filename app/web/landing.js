// flinks-bff: the page Flinks Connect's redirectUrl points at (app/api/landing.py).
//
// A Connect that ignores jsRedirect navigates the top window here with
// ?loginId=…&institution=… in the address. This script:
//   1. takes the query out of the address bar and of this history entry, before anything else;
//   2. hands the loginId to our own BFF, same origin, with the session cookie:
//      POST /v1/connect/sessions/{flow_id}/complete (a second completion with the same loginId,
//      say by the page that embedded Connect, gets the flow's status and no second Flinks call);
//   3. replaces this page with the flow's return URL, carrying flow_id and status only.
// The loginId is never shown, stored or logged, and never leaves for another origin. The page
// sends no Referer (Referrer-Policy and the meta tag) and is not cached (no-store).
(function () {
  "use strict";

  var LOGIN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  var FLOW_ID = /^[A-Za-z0-9_-]{22}$/;
  // The same pattern as INSTITUTION_ID_PATTERN in app/flows/records.py.
  var INSTITUTION_ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
  var STATUSES = ["started", "authorizing", "mfa_required", "pending", "connected", "failed"];

  var query = new URLSearchParams(window.location.search);
  window.history.replaceState(null, "", window.location.pathname);

  var page = document.getElementById("landing");
  var title = document.getElementById("landing-title");
  var detail = document.getElementById("landing-detail");
  var retry = document.getElementById("landing-retry");
  var back = document.getElementById("landing-back");
  var flowId = page.getAttribute("data-flow-id") || "";
  var returnUrl = httpUrl(page.getAttribute("data-return-url"));

  function httpUrl(text) {
    try {
      var url = new URL(text || "");
      return url.protocol === "https:" || url.protocol === "http:" ? url : null;
    } catch (e) {
      return null;
    }
  }

  // The return URL (one of the BFF's allowed ones, from the server) plus our own parameters.
  function returnTo(params) {
    var url = new URL(returnUrl.href);
    url.hash = "";
    Object.keys(params).forEach(function (name) {
      url.searchParams.append(name, params[name]);
    });
    return url.href;
  }

  // `backParams`: offer the way back to the app, with these parameters; none: no way back yet.
  function show(state, heading, words, backParams) {
    page.setAttribute("data-state", state);
    title.textContent = heading;
    detail.textContent = words;
    back.hidden = !(returnUrl && backParams);
    if (!back.hidden) back.href = returnTo(backParams);
  }

  // The one value of a parameter, or null when it is absent or repeated.
  function single(name) {
    var values = query.getAll(name);
    return values.length === 1 ? values[0] : null;
  }

  function complete(loginId, institution) {
    var body = { login_id: loginId };
    if (institution) body.institution = institution;
    retry.hidden = true;
    show("busy", "Finishing the link…", "Our server is checking the account with Flinks.");
    fetch("/v1/connect/sessions/" + encodeURIComponent(flowId) + "/complete", {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body)
    })
      .then(function (response) {
        return response.json().then(
          function (data) { return { response: response, data: data }; },
          function () { return { response: response, data: null }; }
        );
      })
      .then(function (result) {
        var data = result.data;
        if (result.response.ok && data && STATUSES.indexOf(data.status) !== -1) {
          window.location.replace(returnTo({ flow_id: flowId, status: data.status }));
        } else if (result.response.status >= 400 && result.response.status < 500) {
          // Refused (not this browser's flow, expired, another loginId already): the app reads
          // the flow's real state and explains it.
          window.location.replace(returnTo({ flow_id: flowId }));
        } else {
          failed();
        }
      }, failed);

    function failed() {
      // Not confirmed either way; the loginId is still in this page's memory, so try again.
      show(
        "error",
        "The link could not be finished yet.",
        "We could not reach our server, or it could not answer. Try again in a moment.",
        { flow_id: flowId }
      );
      retry.hidden = false;
      retry.focus();
    }
  }

  if (!returnUrl) {
    show("error", "This link cannot go on.", "The page has no address to return to.");
    return;
  }
  if (!FLOW_ID.test(flowId)) {
    show(
      "error",
      "We could not find this link attempt.",
      "It may have expired, or it was started in another browser. Nothing was linked.",
      {}
    );
    return;
  }
  var loginId = single("loginId");
  if (loginId === null || !LOGIN_ID.test(loginId)) {
    show(
      "error",
      "Flinks did not say which account to link.",
      "Nothing was linked here. Go back to the app to see where the link stands.",
      { flow_id: flowId }
    );
    return;
  }
  var institution = single("institution");
  if (institution !== null && !INSTITUTION_ID.test(institution)) institution = null;
  retry.addEventListener("click", function () {
    complete(loginId, institution);
  });
  complete(loginId, institution);
})();
