import { test, expect } from './fixtures';

test('about page is linked', async ({ page }) => {
  await page.click('text=About');
  await expect(page.locator('h1')).toHaveText('About');
});
