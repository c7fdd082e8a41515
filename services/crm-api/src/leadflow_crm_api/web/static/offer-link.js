// The one-click offer-link page (routes/offer_links.py) posts its form as soon as it opens: a person's click on
// the email's link claims; a mail scanner that fetches links runs no script and claims nothing. A file, not an
// inline script: crm-api's pages run only their own static scripts (decision 0092).
document.getElementById("accept")?.submit();
